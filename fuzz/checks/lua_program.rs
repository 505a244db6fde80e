//! What the `lua_program` fuzz target checks for each input (also replayed on stable by
//! `services/luanette/tests/fuzz_corpus.rs`): the input's bytes choose a Lua program from a
//! small grammar built from the stdlib's own calls (string building, patterns, sort with a
//! comparator, `table.concat`, shared and self-referencing tables, coroutines, `pcall`,
//! `json.*`, `midi.*`, `otel.event`, `print`, endless loops and recursion), and the program
//! runs in a sandbox VM with tight limits. For every program:
//!
//! - nothing panics or aborts, whatever the program does;
//! - it ends within its wall limit + 250 ms of this thread's CPU time (CPU, not the clock, so a
//!   busy machine that preempts the fuzzer is not mistaken for a runaway; patterns only ever see short strings here: a
//!   pattern over a long string is one C call no hook can stop, which is why the service
//!   runs scripts in separate processes, tested in `tests/system/tests/hostile_lua.rs`);
//! - the VM's memory stays within its limit, captured output within its bound, and a
//!   result within the conversion budget;
//! - a VM that resets cleanly really is clean: the next program sees none of this one's globals.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use luanette::sandbox::{Limits, RunContext, Vm};
use prost::Message as _;

/// Tight limits, so the fuzzer spends its time on many programs.
const LIMITS: Limits = Limits {
    wall: Duration::from_millis(2),
    memory: 1 << 20,
};
const OVERRUN: Duration = Duration::from_millis(250);
/// For the check that a reset VM kept no global: time is not what it tests.
const LEAK_CHECK_LIMITS: Limits = Limits {
    wall: Duration::from_secs(1),
    memory: 1 << 20,
};

thread_local! {
    static VM: std::cell::RefCell<Option<Vm>> = const { std::cell::RefCell::new(None) };
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Reads choices from the input; zeros once it is used up.
struct Choices<'a>(&'a [u8]);

impl Choices<'_> {
    fn next(&mut self, n: usize) -> usize {
        match self.0.split_first() {
            Some((first, rest)) => {
                self.0 = rest;
                *first as usize % n
            }
            None => 0,
        }
    }
}

const PATTERNS: &[&str] = &[
    ".-.-b",
    "(a+)+b",
    "%a+",
    "[%w_]+",
    "^(.-)%s*$",
    "(%d+)%.(%d+)",
    "%b()",
    "%f[%w]%w+",
    "a*a*a*a*c",
    ".-",
];

fn variable(c: &mut Choices) -> String {
    format!("v{}", c.next(4))
}

fn expression(c: &mut Choices, depth: usize) -> String {
    if depth > 3 {
        return c.next(1000).to_string();
    }
    match c.next(14) {
        0 => c.next(100_000).to_string(),
        1 => format!("'{}'", ["a", "b", "hello", "é", "\\0", "%d"][c.next(6)]),
        2 => variable(c),
        3 => format!("#tostring({})", variable(c)),
        4 => format!(
            "tostring({}) .. tostring({})",
            expression(c, depth + 1),
            expression(c, depth + 1)
        ),
        5 => format!("{{{}, {}}}", expression(c, depth + 1), expression(c, depth + 1)),
        6 => "t".into(),
        7 => "arr".into(),
        8 => format!("string.rep('ab', {})", c.next(5000)),
        9 => format!("({} or 0)", variable(c)),
        10 => format!("{{x = {}, y = {{t}}}}", expression(c, depth + 1)),
        11 => "params".into(),
        12 => format!("math.floor({} * 1.5)", c.next(1000)),
        _ => "nil".into(),
    }
}

fn statement(c: &mut Choices, depth: usize) -> String {
    let v = variable(c);
    if depth > 3 {
        return format!("{v} = {}", c.next(10));
    }
    match c.next(24) {
        0 => format!("{v} = {}", expression(c, depth)),
        1 => format!("for i = 1, {} do {} end", c.next(2000), statement(c, depth + 1)),
        2 => format!("{v} = string.rep(tostring({v}), {})", c.next(3000)),
        3 => format!("local ok, err = pcall(function() {} end)", statement(c, depth + 1)),
        4 => "t = {t, t}".into(),
        5 => format!("print({}, {})", expression(c, depth), expression(c, depth)),
        6 => "table.sort(arr, function(a, b) return (tonumber(a) or 0) < (tonumber(b) or 0) end)".into(),
        7 => format!(
            "{v} = string.find(string.sub(tostring({v}), 1, 64), '{}')",
            PATTERNS[c.next(PATTERNS.len())]
        ),
        8 => format!("{v} = json.encode({})", expression(c, depth)),
        9 => format!("{v} = json.decode('[1, {{\"a\": [true, null, {}]}}]')", c.next(100)),
        10 => format!(
            "{v} = #midi.write({{tracks = {{{{{{tick = {}, type = 'note_on', channel = 0, note = {}, velocity = 100}}}}}}}})",
            c.next(100_000),
            c.next(128)
        ),
        11 => format!(
            "{v} = coroutine.wrap(function() {} coroutine.yield(1) return 2 end)()",
            statement(c, depth + 1)
        ),
        12 => format!("otel.event('fuzz.event', {{x = {}}})", expression(c, depth)),
        13 => format!("error({})", expression(c, depth)),
        14 => format!("{v} = setmetatable({{}}, {{__index = function(_, k) return k end}}).{v}"),
        15 => format!("{v} = string.format('%{}d', {})", c.next(99), c.next(1000)),
        16 => format!("{v} = table.concat(arr, tostring({v}))"),
        17 => format!("{v} = utf8.char({}, {})", c.next(0x10FFFF), c.next(128)),
        18 => "while true do end".into(),
        19 => "local function f(n) return f(n + 1) + 1 end f(1)".into(),
        20 => format!("arr[#arr + 1] = {}", expression(c, depth)),
        21 => format!("t.self = t; t[{}] = {v}", c.next(10)),
        22 => format!("log.info({v}); warn(tostring({v}))"),
        _ => format!("{v} = string.rep(tostring({v}), {}, ',')", c.next(100)),
    }
}

/// The Lua program `data` chooses.
pub fn program(data: &[u8]) -> String {
    let mut c = Choices(data);
    let mut code = String::from("local t = {1, 'two', {3}}\nlocal arr = {5, 3, 9, 1}\n");
    for _ in 0..c.next(12) + 1 {
        code.push_str(&statement(&mut c, 0));
        code.push('\n');
    }
    code.push_str(&format!("return {}\n", expression(&mut c, 0)));
    code
}

/// Runs the check on one input; panics on a violation.
pub fn run(data: &[u8]) {
    let code = program(data);
    VM.with(|slot| {
        let mut slot = slot.borrow_mut();
        let vm = match slot.take() {
            Some(vm) => vm,
            None => Vm::new().expect("a sandbox VM"),
        };
        let started = thread_cpu();
        let result = vm.eval(
            &code,
            None,
            LIMITS,
            Arc::new(AtomicBool::new(false)),
            RunContext::default(),
        );
        let took = thread_cpu().saturating_sub(started);
        assert!(took < LIMITS.wall + OVERRUN, "ran {took:?}:\n{code}");
        assert!(
            vm.lua().used_memory() <= LIMITS.memory + (64 << 10),
            "{} bytes held:\n{code}",
            vm.lua().used_memory()
        );
        if let Ok(output) = &result {
            assert!(
                output.result.encoded_len() <= luanette::sandbox::MAX_CONVERTED_BYTES,
                "a result beyond the budget:\n{code}"
            );
            let printed: usize = output.output.iter().map(|l| l.message.len()).sum();
            assert!(printed <= (1 << 20) + 256, "{printed} bytes of output kept:\n{code}");
        }
        if vm.reset() {
            let leaked = vm
                .eval(
                    "return v0 == nil and v1 == nil and t == nil and arr == nil",
                    None,
                    // Not a test of time: a generous wall limit, so a busy host that
                    // deschedules this thread for 2 ms cannot fail it (it did once).
                    LEAK_CHECK_LIMITS,
                    Arc::new(AtomicBool::new(false)),
                    RunContext::default(),
                )
                .expect("a clean VM runs a trivial check");
            assert_eq!(
                leaked.result.kind,
                Some(prost_types::value::Kind::BoolValue(true)),
                "a global outlived its run:\n{code}"
            );
            if vm.reset() {
                *slot = Some(vm);
            }
        }
    });
}
