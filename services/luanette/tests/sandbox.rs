//! The sandbox against hostile scripts: escapes denied, limits that really stop the VM
//! (also when the script catches errors), cancel, output capture and value conversion.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use luanette::sandbox::{EvalError, EvalOutput, Limits, eval};
use prost_types::value::Kind;

fn run(code: &str) -> Result<EvalOutput, EvalError> {
    eval(code, None, Limits::default(), Arc::new(AtomicBool::new(false)))
}

fn quick(code: &str, wall_ms: u64) -> (Result<EvalOutput, EvalError>, Duration) {
    let limits = Limits {
        wall: Duration::from_millis(wall_ms),
        ..Limits::default()
    };
    let started = Instant::now();
    (
        eval(code, None, limits, Arc::new(AtomicBool::new(false))),
        started.elapsed(),
    )
}

fn json(output: &EvalOutput) -> serde_json::Value {
    hooteproto::wkt::value_to_json(output.result.clone())
}

#[test]
fn escapes_are_denied() {
    let attempts = [
        ("io", "return io.open('/etc/passwd')"),
        ("os.execute", "return os.execute('true')"),
        ("os.remove", "return os.remove('/tmp/x')"),
        ("require", "return require('os')"),
        ("package", "return package.loadlib('libc.so.6', 'system')"),
        ("load", "return load('return 1')()"),
        ("bytecode", "return load(string.dump(function() return 1 end))()"),
        ("string.dump", "return string.dump(print)"),
        ("dofile", "return dofile('/etc/passwd')"),
        ("loadfile", "return loadfile('/etc/passwd')"),
        ("debug", "return debug.getregistry()"),
        ("collectgarbage", "return collectgarbage('count')"),
        (
            "metatable trick",
            "local mt = getmetatable('') ; return mt.__index.dump(print)",
        ),
    ];
    for (name, code) in attempts {
        match run(code) {
            Err(EvalError::Runtime { .. }) => {}
            other => panic!("{name}: expected a runtime error, got {other:?}"),
        }
    }
    // What is allowed still works.
    let ok = run("return {os.time() > 0, type(os.clock()), os.date('%Y') ~= nil, string.upper('ok'), math.floor(2.5)}")
        .expect("safe libs");
    assert_eq!(json(&ok), serde_json::json!([true, "number", true, "OK", 2.0]));
}

#[test]
fn a_busy_loop_is_stopped_at_its_time_limit() {
    let (result, took) = quick("while true do end", 200);
    assert!(matches!(result, Err(EvalError::TimeLimit(_))), "{result:?}");
    assert!(
        took < Duration::from_millis(400),
        "stopped within ~100 ms of the limit: {took:?}"
    );
}

#[test]
fn catching_the_limit_error_does_not_keep_a_script_alive() {
    for evasion in [
        "while true do pcall(function() while true do end end) end",
        "while true do xpcall(function() while true do end end, function() return 1 end) end",
        "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
        "local function f() while true do pcall(f) end end f()",
    ] {
        let (result, took) = quick(evasion, 150);
        assert!(matches!(result, Err(EvalError::TimeLimit(_))), "{evasion}: {result:?}");
        assert!(took < Duration::from_millis(1500), "{evasion}: took {took:?}");
    }
}

#[test]
fn a_memory_bomb_is_stopped_by_the_memory_limit() {
    let limits = Limits {
        memory: 16 << 20,
        wall: Duration::from_secs(10),
    };
    for bomb in [
        "local t = {} ; while true do t[#t + 1] = string.rep('x', 1024) .. #t end",
        "return string.rep('x', 1 << 30)",
        "local s = 'x' ; while true do s = s .. s end",
    ] {
        let started = Instant::now();
        let result = eval(bomb, None, limits, Arc::new(AtomicBool::new(false)));
        assert!(matches!(result, Err(EvalError::MemoryLimit(_))), "{bomb}: {result:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    // Caught with pcall, the bomb cannot exceed the limit either; the time limit ends it.
    let limits = Limits {
        memory: 16 << 20,
        wall: Duration::from_millis(300),
    };
    let caught = "local t = {} ; while true do pcall(function() t[#t + 1] = string.rep('x', 4096) .. #t end) end";
    let result = eval(caught, None, limits, Arc::new(AtomicBool::new(false)));
    assert!(matches!(result, Err(EvalError::TimeLimit(_))), "{result:?}");
}

#[test]
fn cancel_from_another_thread_stops_the_script() {
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
        Instant::now()
    });
    let result = eval("while true do end", None, Limits::default(), cancel);
    let stopped = Instant::now();
    let cancelled_at = canceller.join().expect("canceller");
    assert!(matches!(result, Err(EvalError::Cancelled)), "{result:?}");
    assert!(
        stopped - cancelled_at < Duration::from_millis(100),
        "stopped {:?} after the cancel",
        stopped - cancelled_at
    );
}

#[test]
fn errors_say_what_and_where() {
    match run("local x = 1\nlocal y = nil\nreturn y.field") {
        Err(EvalError::Runtime {
            message,
            line,
            traceback,
        }) => {
            assert_eq!(line, Some(3), "{message}");
            assert!(message.contains("attempt to index a nil value"), "{message}");
            assert!(traceback.contains("stack traceback"), "{traceback}");
        }
        other => panic!("expected a runtime error, got {other:?}"),
    }
    match run("return 1 +") {
        Err(EvalError::Syntax { line, .. }) => assert_eq!(line, Some(1)),
        other => panic!("expected a syntax error, got {other:?}"),
    }
    match run("error('custom failure')") {
        Err(EvalError::Runtime { message, .. }) => assert!(message.contains("custom failure"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn output_is_captured_and_bounded() {
    let output = run("print('hello', 42, nil) ; log.warn('careful') ; return true").expect("run");
    let lines: Vec<_> = output.output.iter().map(|l| (l.level, l.message.as_str())).collect();
    assert_eq!(lines, [(2, "hello\t42\tnil"), (3, "careful")]);
    let flood = run("for i = 1, 20000 do print(i) end").expect("run");
    assert_eq!(flood.output.len(), 10_001, "10,000 lines and one truncation notice");
    assert!(flood.output.last().is_some_and(|l| l.message.contains("truncated")));
}

#[test]
fn values_cross_both_ways() {
    let params = hooteproto::wkt::Struct::from_json(
        serde_json::json!({"tempo": 120, "swing": 0.5, "key": "Dm", "sections": ["a", "b"], "nested": {"on": true}})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    )
    .to_prost()
    .expect("struct");
    let code = "return {tempo = params.tempo * 2, swing = params.swing, key = params.key, n = #params.sections, \
                first = params.sections[1], on = params.nested.on, list = {1, 2, 3}, empty = {}}";
    let output = eval(code, Some(&params), Limits::default(), Arc::new(AtomicBool::new(false))).expect("run");
    assert_eq!(
        json(&output),
        serde_json::json!({"tempo": 240.0, "swing": 0.5, "key": "Dm", "n": 2.0, "first": "a", "on": true,
                           "list": [1.0, 2.0, 3.0], "empty": {}})
    );
    assert!(matches!(
        run("return nil").expect("nil").result.kind,
        Some(Kind::NullValue(_))
    ));
    for (bad, why) in [
        ("return print", "function"),
        ("return {f = function() end}", "f: a function"),
        ("local t = {} ; t.self = t ; return t", "cycle"),
        ("return {[true] = 1}", "boolean"),
        ("return 0/0", "not a JSON number"),
        ("return '\\xff'", "UTF-8"),
    ] {
        match run(bad) {
            Err(EvalError::Conversion(message)) => assert!(message.contains(why), "{bad}: {message}"),
            other => panic!("{bad}: expected a conversion error, got {other:?}"),
        }
    }
}

fn run_on(vm: &luanette::sandbox::Vm, code: &str) -> Result<EvalOutput, EvalError> {
    vm.eval(
        code,
        None,
        Limits::default(),
        Arc::new(AtomicBool::new(false)),
        luanette::sandbox::RunContext::default(),
    )
}

#[test]
fn a_reused_vm_forgets_everything_a_script_did() {
    let vm = luanette::sandbox::Vm::new().expect("vm");
    let pristine = json(
        &run_on(
            &vm,
            "return {type(string.upper), type(leaked), tostring(('x'):upper()), string.upper('x'), math.floor(1.5)}",
        )
        .expect("run"),
    );
    let tampering = [
        "leaked = 'secret'",
        "_G.leaked = 'secret' ; rawset(_G, 'other', 1)",
        "string.upper = function() return 'pwned' end",
        "getmetatable('').__index = {upper = function() return 'pwned' end}",
        "setmetatable(_G, {__index = function() return 'pwned' end})",
        "table.insert = nil ; math.floor = print ; os.time = nil",
        "string = nil ; print = nil ; setmetatable = nil",
        "log.info = function() leaked = 1 end",
        "rawset(string, 'upper', function() return 'pwned' end) ; rawset(math, 'floor', print)",
        "rawset(getmetatable(string) or {}, '__index', {}) ; setmetatable(string, nil)",
    ];
    for code in tampering {
        // Some attempts fail outright (protected metatables); either way nothing may stick.
        let _ = run_on(&vm, &format!("{code} ; return true"));
        assert!(vm.reset(), "{code}: the VM stays reusable");
        assert_eq!(
            json(
                &run_on(
                    &vm,
                    "return {type(string.upper), type(leaked), tostring(('x'):upper()), string.upper('x'), math.floor(1.5)}"
                )
                .expect("run")
            ),
            pristine,
            "after `{code}`"
        );
        assert!(vm.reset());
        let after = run_on(
            &vm,
            "return {type(table.insert), type(math.floor), type(os.time), type(print), leaked, other}",
        )
        .expect("run");
        assert_eq!(
            json(&after),
            serde_json::json!(["function", "function", "function", "function"]),
            "after `{code}`"
        );
        assert!(vm.reset());
    }
    // Escapes stay closed on a reused VM.
    for code in [
        "return io",
        "return load",
        "return require",
        "return debug",
        "return string.dump",
    ] {
        assert_eq!(
            json(&run_on(&vm, code).expect("run")),
            serde_json::Value::Null,
            "{code}"
        );
        assert!(vm.reset());
    }
}

#[test]
fn finalizers_and_random_state_cannot_cross_runs() {
    let vm = luanette::sandbox::Vm::new().expect("vm");
    match run_on(&vm, "setmetatable({}, {__gc = function() leaked = 1 end})") {
        Err(EvalError::Runtime { message, .. }) => assert!(message.contains("__gc"), "{message}"),
        other => panic!("finalizers must be refused: {other:?}"),
    }
    assert!(vm.reset());
    let seeded = "math.randomseed(42) ; return math.random(1, 1000000)";
    let first = json(&run_on(&vm, seeded).expect("run"));
    assert!(vm.reset());
    let after_seed = json(&run_on(&vm, "return math.random(1, 1000000)").expect("run"));
    assert!(vm.reset());
    assert_eq!(
        json(&run_on(&vm, seeded).expect("run")),
        first,
        "seeding still works within a run"
    );
    assert!(vm.reset());
    // Had the seed leaked, the next run's first number would repeat the seeded sequence's second.
    let second_of_seeded = json(
        &run_on(
            &vm,
            "math.randomseed(42) ; math.random(1, 1000000) ; return math.random(1, 1000000)",
        )
        .expect("run"),
    );
    assert_ne!(after_seed, second_of_seeded, "math.random is reseeded between runs");
}

#[test]
fn a_vm_that_tripped_a_limit_is_not_reused() {
    let vm = luanette::sandbox::Vm::new().expect("vm");
    let limits = Limits {
        wall: Duration::from_millis(50),
        ..Limits::default()
    };
    let result = vm.eval(
        "while true do end",
        None,
        limits,
        Arc::new(AtomicBool::new(false)),
        luanette::sandbox::RunContext::default(),
    );
    assert!(matches!(result, Err(EvalError::TimeLimit(_))), "{result:?}");
    assert!(!vm.reset(), "a poisoned VM must be dropped");
    let vm = luanette::sandbox::Vm::new().expect("vm");
    run_on(&vm, "big = string.rep('x', 8 << 20)").expect("run");
    assert!(vm.reset(), "garbage is collected on reset");
}

#[test]
fn the_reference_documents_exactly_what_is_installed() {
    let reference = luanette::stdlib::reference();
    let vm = luanette::sandbox::Vm::new().expect("vm");
    for module in vm.api() {
        for function in &module.functions {
            let path = if module.name.is_empty() {
                function.name.to_string()
            } else {
                format!("{}.{}", module.name, function.name)
            };
            assert!(reference.contains(function.signature), "{path} is documented");
            let kind = run_on(&vm, &format!("return type({path})")).expect("run");
            assert_eq!(json(&kind), "function", "{path} is installed");
            assert!(!function.doc.is_empty(), "{path} has a description");
            assert!(
                function.doc.contains("Example") || function.example.is_some(),
                "{path} has an example"
            );
        }
    }
    // Every global a script can reach is either in the reference or standard Lua listed there.
    let mut globals = 0;
    for pair in vm.lua().globals().pairs::<String, mlua::Value>() {
        let (name, value) = pair.expect("global");
        globals += 1;
        let listed = match value {
            mlua::Value::Table(_) if name != "_G" => {
                reference.contains(&format!("- `{name}`")) || reference.contains(&format!("### {name}"))
            }
            mlua::Value::Function(_) => reference.split([' ', ',', '`', '(', '\n']).any(|word| word == name),
            _ => true,
        };
        assert!(listed, "{name} appears in the reference");
    }
    assert!(globals > 20, "the walk saw the globals ({globals})");
    let base = reference
        .lines()
        .find(|l| l.starts_with("- base:"))
        .expect("a list of base functions");
    for escape in ["require", "load", "dofile", "collectgarbage"] {
        assert!(
            !base.split([' ', ',']).any(|name| name == escape),
            "{escape} is not advertised: {base}"
        );
    }
    for module in ["io", "debug", "package"] {
        assert!(
            !reference.contains(&format!("- `{module}`")),
            "{module} is not advertised"
        );
    }
}

#[test]
fn warn_is_captured_not_written_to_the_server() {
    let output = run("warn('@on') ; warn('low ', 'battery') ; return 1").expect("run");
    let lines: Vec<_> = output.output.iter().map(|l| (l.level, l.message.as_str())).collect();
    assert_eq!(lines, [(3, "low battery")]);
}

#[test]
fn runaways_inside_c_boundaries_and_deep_recursion_are_stopped() {
    // A sort comparator cannot yield: the stop must still unwind it.
    let (result, took) = quick("table.sort({3, 2, 1, 5, 4}, function(a, b) while true do end end)", 150);
    assert!(matches!(result, Err(EvalError::TimeLimit(_))), "{result:?}");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    match run("local function f(n) return f(n + 1) + 1 end return f(1)") {
        Err(EvalError::Runtime { message, .. }) => assert!(message.contains("nested calls"), "{message}"),
        other => panic!("expected a stack overflow error, got {other:?}"),
    }
}

#[test]
fn otel_event_checks_its_input() {
    assert!(run("otel.event('bridge.chosen', {score = 0.8}) return true").is_ok());
    match run("otel.event('')") {
        Err(EvalError::Runtime { message, .. }) => assert!(message.contains("otel.event"), "{message}"),
        other => panic!("{other:?}"),
    }
    match run("otel.event('x', {f = print})") {
        Err(EvalError::Runtime { message, .. }) => assert!(message.contains("function"), "{message}"),
        other => panic!("{other:?}"),
    }
}
