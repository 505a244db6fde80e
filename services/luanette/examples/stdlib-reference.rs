//! Prints the Lua API reference that `lua://stdlib` serves (generated from the sandbox).
fn main() {
    print!("{}", luanette::stdlib::reference());
}
