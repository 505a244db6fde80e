//! Test helper and demo: stores pseudo-random objects into a CAS root, printing each hash
//! once `store` has returned (i.e. once the object is durable).
//!
//! ```text
//! cargo run -p cas --example cas-writer -- ROOT SEED COUNT   # COUNT 0 = until killed
//! ```

use std::io::Write as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, root, seed, count] = args.as_slice() else {
        return Err("usage: cas-writer ROOT SEED COUNT".into());
    };
    let cas = cas::Cas::open(root)?;
    let (mut state, count): (u64, u64) = (seed.parse()?, count.parse()?);
    let mut stdout = std::io::stdout().lock();
    let mut i = 0;
    while count == 0 || i < count {
        // xorshift: deterministic per seed, so two writers with one seed store the same objects.
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let size = 1024 + (next() % (512 * 1024)) as usize;
        let bytes: Vec<u8> = (0..size / 8).flat_map(|_| next().to_le_bytes()).collect();
        let stored = cas.store(&bytes, "application/x-test")?;
        writeln!(stdout, "{}", stored.info.hash)?;
        stdout.flush()?;
        i += 1;
    }
    Ok(())
}
