//! What scripts can call beyond standard Lua, registered with its documentation so that
//! the reference (`lua://stdlib`, the prompts) is generated from what is installed and
//! cannot drift from it.

mod abc;
mod cas;
mod garden;
mod hoot;
mod json;
mod midi;
mod models;
mod peers;

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use mlua::{Lua, Value as LuaValue};

use crate::sandbox::RunHandle;

pub use models::{Backend, Models};
pub use peers::{Connections, Peers};

/// What the stdlib reaches outside the VM. `Default` has nothing: functions that need a
/// service raise an error saying so (the reference is generated from such a VM).
#[derive(Clone, Default)]
pub struct Services {
    /// The shared CAS, for `cas.*`, `midi.load/save` and model results.
    pub cas: Option<::cas::Cas>,
    /// The model services.
    pub models: Arc<Models>,
    /// The HTTP client of the thread the VM runs on, built at its first model call (see
    /// [`Services::for_this_thread`]); None where scripts cannot wait (describe, slices).
    pub http: Option<Arc<OnceLock<Option<reqwest::Client>>>>,
    /// The services `garden.*` and `hoot.*` reach.
    pub peers: Arc<Peers>,
    /// This thread's connections to them, made by [`Services::for_this_thread`] (None: the
    /// functions say they cannot call out here).
    pub connections: Option<Connections>,
}

impl Services {
    /// A copy with an HTTP client of its own, for one worker thread: a client's pooled
    /// connections are driven by the runtime that opened them.
    pub fn for_this_thread(&self) -> Self {
        Self {
            http: Some(Arc::new(OnceLock::new())),
            connections: Some(peers::Connections::new(self.peers.clone())),
            ..self.clone()
        }
    }
}

/// The client in `slot`, built on first use (loading the system's root certificates is not
/// free, and most threads never call a model).
pub(crate) fn http_client(slot: &OnceLock<Option<reqwest::Client>>) -> Option<reqwest::Client> {
    slot.get_or_init(|| {
        reqwest::Client::builder()
            .user_agent(concat!("luanette/", env!("CARGO_PKG_VERSION")))
            // A redirect to another host would carry the request (and a bearer key) to a
            // host the operator never configured.
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let same_host = attempt.previous().first().is_some_and(|first| {
                    first.host_str() == attempt.url().host_str()
                        && first.port_or_known_default() == attempt.url().port_or_known_default()
                });
                if same_host && attempt.previous().len() < 5 {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|error| tracing::error!(%error, "no HTTP client: model calls will fail"))
            .ok()
    })
    .clone()
}

/// Installs the modules that need more than the run itself. Every function they register
/// first checks the run's deadline and cancel flag (see [`RunHandle::check`]).
pub(crate) fn install(api: &mut Registrar<'_>, services: &Services, run: &RunHandle) -> mlua::Result<()> {
    api.check_every_call(run)?;
    json::install(api, run)?;
    abc::install(api)?;
    cas::install(api, services.cas.clone(), run)?;
    midi::install(api, services.cas.clone(), run)?;
    // Without a thread's connections (the reference VM, describe), the functions are still
    // there and say so when called.
    let connections = services
        .connections
        .clone()
        .unwrap_or_else(|| peers::Connections::new(services.peers.clone()));
    garden::install(api, connections.clone(), run)?;
    hoot::install(api, connections, run)?;
    models::install(
        api,
        services.http.clone(),
        services.models.clone(),
        services.cas.clone(),
        run,
    )
}

/// A Lua error naming the function that raised it.
pub(crate) fn fail(function: &str, message: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(format!("{function}: {message}"))
}

/// One documented function.
#[derive(Debug, Clone)]
pub struct Function {
    /// Its name within the module.
    pub name: &'static str,
    /// How to call it, e.g. `job.progress(fraction, message?)`.
    pub signature: &'static str,
    /// What it does.
    pub doc: &'static str,
    /// A short example call, unless `doc` already shows one.
    pub example: Option<&'static str>,
}

/// A documented module (a global table), or the globals themselves (name "").
#[derive(Debug, Clone)]
pub struct Module {
    /// The global name ("" for plain globals such as `print`).
    pub name: &'static str,
    /// What the module is for.
    pub doc: &'static str,
    /// Its documented functions, in registration order.
    pub functions: Vec<Function>,
}

/// Installs functions into a VM and records their documentation.
pub struct Registrar<'a> {
    lua: &'a Lua,
    modules: Vec<Module>,
    /// `wrap(check, f)`: `f` behind a call of `check` (set by [`Registrar::check_every_call`]).
    guard: Option<(mlua::Function, mlua::Function)>,
}

impl<'a> Registrar<'a> {
    /// For the VM `lua`.
    pub fn new(lua: &'a Lua) -> Self {
        Self {
            lua,
            modules: vec![Module {
                name: "",
                doc: "Globals.",
                functions: Vec::new(),
            }],
            guard: None,
        }
    }

    /// From now on, each registered function first calls [`RunHandle::check`]. The wrapper is
    /// Lua, so functions that wait (model calls) can still yield through it.
    pub fn check_every_call(&mut self, run: &RunHandle) -> mlua::Result<()> {
        let run = run.clone();
        let check = self.lua.create_function(move |lua, ()| run.check(lua))?;
        let wrap = self
            .lua
            .load("local check, f = ... return function(...) check() return f(...) end")
            .set_name("stdlib")
            .into_function()?;
        self.guard = Some((wrap, check));
        Ok(())
    }

    /// The VM being set up.
    pub fn lua(&self) -> &'a Lua {
        self.lua
    }

    /// Declares a module (a global table) before its functions are registered.
    pub fn module(&mut self, name: &'static str, doc: &'static str) {
        self.modules.push(Module {
            name,
            doc,
            functions: Vec::new(),
        });
    }

    /// Installs `function` as `module.name` (or the global `name` when `module` is "").
    pub fn function(
        &mut self,
        module: &'static str,
        name: &'static str,
        signature: &'static str,
        doc: &'static str,
        function: mlua::Function,
    ) -> mlua::Result<()> {
        let function = match &self.guard {
            Some((wrap, check)) => wrap.call::<mlua::Function>((check.clone(), function))?,
            None => function,
        };
        let globals = self.lua.globals();
        if module.is_empty() {
            globals.set(name, function)?;
        } else {
            let table = match globals.get::<LuaValue>(module)? {
                LuaValue::Table(table) => table,
                _ => {
                    let table = self.lua.create_table()?;
                    globals.set(module, table.clone())?;
                    table
                }
            };
            table.set(name, function)?;
        }
        let path = if module.is_empty() {
            name.to_string()
        } else {
            format!("{module}.{name}")
        };
        let example = EXAMPLES.iter().find(|(p, _)| *p == path).map(|(_, e)| *e);
        let entry = Function {
            name,
            signature,
            doc,
            example,
        };
        match self.modules.iter_mut().find(|m| m.name == module) {
            Some(existing) => existing.functions.push(entry),
            None => self.modules.push(Module {
                name: module,
                doc: "",
                functions: vec![entry],
            }),
        }
        Ok(())
    }

    /// The documentation of everything registered.
    pub fn finish(self) -> Vec<Module> {
        self.modules
    }
}

/// Examples for functions whose description does not show one (kept here so that every
/// entry of the reference has one; a test checks it).
const EXAMPLES: &[(&str, &str)] = &[
    ("print", "print(\"bar\", 12)"),
    ("warn", "warn(\"no seed given; \", \"generating from scratch\")"),
    ("log.debug", "log.debug(\"notes\", #notes)"),
    ("log.info", "log.info(\"stored \" .. hash)"),
    ("log.warn", "log.warn(\"classifier unsure\")"),
    ("log.error", "log.error(\"no variation parsed\")"),
    ("otel.traceparent", "local tp = otel.traceparent()"),
    ("job.progress", "job.progress(0.5, \"half way\")"),
    ("cas.inspect", "cas.inspect(h).size"),
    ("cas.exists", "if cas.exists(params.section) then ... end"),
    ("midi.write", "local bytes = midi.write(song)"),
    ("midi.load", "local song = midi.load(params.section)"),
    ("midi.save", "return midi.save(midi.transpose(song, 2))"),
    (
        "midi.notes",
        "for _, n in ipairs(midi.notes(song)) do print(n.pitch, n.start) end",
    ),
    ("midi.transpose", "midi.transpose(song, -12)"),
    ("midi.quantize", "midi.quantize(song, {grid = 0.5, strength = 0.8})"),
    ("midi.filter", "midi.filter(song, {channels = {9}})"),
    ("midi.merge", "midi.merge(melody, bass)"),
    ("midi.slice", "midi.slice(song, 0, 16)"),
    ("midi.set_tempo", "midi.set_tempo(song, 96)"),
    ("midi.duration", "midi.duration(song).seconds"),
    ("midi.stats", "midi.stats(song).highest"),
    (
        "orpheus.generate_seeded",
        "orpheus.generate_seeded{seed = params.motif, variations = 2}",
    ),
    ("orpheus.continue", "orpheus.continue{midi = h, max_tokens = 512}"),
    ("orpheus.loops", "orpheus.loops{seed = h}"),
    ("orpheus.classify", "orpheus.classify{midi = h}[1].label"),
];

/// Standard Lua libraries the sandbox keeps, and what it removed from them.
const STANDARD: &[(&str, &str)] = &[
    ("string", "without `string.dump`"),
    ("table", ""),
    ("math", "`math.random` is reseeded for every run"),
    ("utf8", ""),
    ("coroutine", ""),
    ("os", "only `clock`, `time` and `date`"),
];

/// The Lua API reference as Markdown: the standard functions actually present in a fresh
/// sandbox, then every registered function with its signature and documentation.
pub fn reference() -> &'static str {
    static REFERENCE: OnceLock<String> = OnceLock::new();
    REFERENCE.get_or_init(|| match crate::sandbox::Vm::new() {
        Ok(vm) => render(&vm),
        Err(error) => format!("The sandbox could not be built: {error}"),
    })
}

fn names_in(table: &mlua::Table) -> Vec<String> {
    let mut names: Vec<String> = table
        .pairs::<String, LuaValue>()
        .filter_map(Result::ok)
        .filter(|(_, v)| matches!(v, LuaValue::Function(_)))
        .map(|(k, _)| k)
        .collect();
    names.sort();
    names
}

fn render(vm: &crate::sandbox::Vm) -> String {
    let globals = vm.lua().globals();
    let mut out = String::from(
        "# Luanette Lua API (Lua 5.4 sandbox)\n\n\
         Scripts run in a sandbox: no files, no processes, no `require`, no `load` of code or bytecode, no \
         `debug`, no finalizers (`__gc`). Each run has a wall-clock and a memory limit; when one trips, the \
         script stops at once (pcall cannot catch it). The global `params` holds the request's parameters.\n\n\
         A stored script may define `describe()` returning `{name = ..., description = ..., params = <JSON \
         Schema>}` and `main(params)` returning the result; as a job, `main(params)` runs after the top level.\n\n\
         ## Standard Lua\n\n",
    );
    let documented: Vec<&str> = vm.api()[0].functions.iter().map(|f| f.name).collect();
    let base: Vec<String> = names_in(&globals)
        .into_iter()
        .filter(|n| !documented.contains(&n.as_str()))
        .collect();
    let _ = writeln!(out, "- base: {}", base.join(", "));
    for (name, note) in STANDARD {
        if let Ok(table) = globals.get::<mlua::Table>(*name) {
            let note = if note.is_empty() {
                String::new()
            } else {
                format!(" ({note})")
            };
            let _ = writeln!(out, "- `{name}`{note}: {}", names_in(&table).join(", "));
        }
    }
    out.push_str("\n## Luanette\n");
    for module in vm.api() {
        let title = if module.name.is_empty() { "globals" } else { module.name };
        let _ = write!(out, "\n### {title}\n\n");
        if !module.doc.is_empty() && !module.name.is_empty() {
            let _ = write!(out, "{}\n\n", module.doc);
        }
        for function in &module.functions {
            match function.example {
                Some(example) => {
                    let _ = writeln!(
                        out,
                        "- `{}`: {} Example: `{example}`.",
                        function.signature, function.doc
                    );
                }
                None => {
                    let _ = writeln!(out, "- `{}`: {}", function.signature, function.doc);
                }
            }
        }
    }
    out
}
