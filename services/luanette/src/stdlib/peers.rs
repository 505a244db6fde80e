//! HOOT/1 calls from inside a run, for `garden.*` (Chaosgarden) and `hoot.*` (Hootenanny).
//!
//! Each sandbox process connects to a service at its first call and keeps the connection
//! for its later runs. Every call carries the run's traceparent, a deadline no later than
//! the run's own (so the service stops working on it when the run could no longer use
//! the answer), and is cut short by the run's cancel and time limit. A service that is
//! down fails the call at once rather than at its deadline: until a connection has
//! answered, and again after any failure, a call first checks that the endpoint accepts
//! connections.
//!
//! Replies reach Lua in the tool JSON form (proto field names, enums by short name), the
//! same shapes an MCP agent sees.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hooteproto::client::{ClientConfig, RequestOptions};
use hooteproto::v1::envelope::Payload;
use hooteproto::{Client, Key};
use mlua::{Lua, Value as LuaValue};

use super::fail;
use crate::sandbox::{RunHandle, to_lua};

/// The longest one call may take (the run's own deadline may be sooner).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long checking that a service accepts connections may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The services scripts may call, as the operator configured them.
#[derive(Clone, Default)]
pub struct Peers {
    /// Chaosgarden's HOOT/1 endpoint (None: `garden.*` says it is not configured).
    pub chaosgarden: Option<String>,
    /// Hootenanny's HOOT/1 endpoint (None: `hoot.*` says it is not configured).
    pub hootenanny: Option<String>,
    /// The shared HMAC key the services expect.
    pub key: Option<Key>,
    /// Whether `garden.play/stop/seek` may move the transport.
    pub allow_transport: bool,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("chaosgarden", &self.chaosgarden)
            .field("hootenanny", &self.hootenanny)
            .field("key", &self.key.as_ref().map(|_| "<set>"))
            .field("allow_transport", &self.allow_transport)
            .finish()
    }
}

/// Which service.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Peer {
    Chaosgarden,
    Hootenanny,
}

impl Peer {
    fn title(self) -> &'static str {
        match self {
            Peer::Chaosgarden => "Chaosgarden",
            Peer::Hootenanny => "Hootenanny",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Peer::Chaosgarden => "--chaosgarden (LUANETTE_CHAOSGARDEN)",
            Peer::Hootenanny => "--hootenanny (LUANETTE_HOOTENANNY)",
        }
    }
}

/// One service's connection, made at first use.
#[derive(Default)]
struct Connection {
    client: OnceLock<Client>,
    /// A reply has come back since the last failure.
    answering: AtomicBool,
}

/// The connections of one thread's VMs (a client is driven by the runtime that made it).
#[derive(Clone, Default)]
pub struct Connections {
    peers: Arc<Peers>,
    chaosgarden: Arc<Connection>,
    hootenanny: Arc<Connection>,
}

impl Connections {
    /// Connections (made at first use) to `peers`.
    pub fn new(peers: Arc<Peers>) -> Self {
        Self {
            peers,
            ..Self::default()
        }
    }

    pub(crate) fn peers(&self) -> &Peers {
        &self.peers
    }

    fn endpoint(&self, peer: Peer) -> Option<&str> {
        match peer {
            Peer::Chaosgarden => self.peers.chaosgarden.as_deref(),
            Peer::Hootenanny => self.peers.hootenanny.as_deref(),
        }
    }

    fn connection(&self, peer: Peer) -> &Connection {
        match peer {
            Peer::Chaosgarden => &self.chaosgarden,
            Peer::Hootenanny => &self.hootenanny,
        }
    }

    /// Sends `request` for the Lua function `function` and returns the reply payload; an
    /// error the service answered with becomes a Lua error naming the function.
    pub(crate) async fn call(
        &self,
        lua: &Lua,
        run: &RunHandle,
        peer: Peer,
        function: &str,
        request: Payload,
    ) -> mlua::Result<Payload> {
        self.exchange(lua, run, peer, function, request)
            .await?
            .map_err(|status| fail(function, status))
    }

    /// [`Connections::call`], handing back the error a service answered with (e.g. to turn
    /// NOT_FOUND into nil); failing to reach it is still a Lua error.
    pub(crate) async fn exchange(
        &self,
        lua: &Lua,
        run: &RunHandle,
        peer: Peer,
        function: &str,
        request: Payload,
    ) -> mlua::Result<Result<Payload, hooteproto::Status>> {
        let endpoint = self.endpoint(peer).ok_or_else(|| {
            fail(
                function,
                format!(
                    "this Luanette has no {} endpoint configured; start it with {}",
                    peer.title(),
                    peer.flag()
                ),
            )
        })?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(fail(
                function,
                "service calls are not available here (e.g. in describe())",
            ));
        }
        let connection = self.connection(peer);
        let left = run.time_left();
        if !connection.answering.load(Ordering::Relaxed) {
            run.guard(lua, probe(endpoint, left.min(PROBE_TIMEOUT)))
                .await?
                .map_err(|why| {
                    fail(
                        function,
                        format!("{} is not reachable at {endpoint}: {why}", peer.title()),
                    )
                })?;
        }
        let client = match connection.client.get() {
            Some(client) => client.clone(),
            None => {
                let mut config = ClientConfig::new(endpoint);
                config.name = "luanette-script".into();
                config.key = self.peers.key.clone();
                let client = Client::connect(config).map_err(|e| fail(function, e))?;
                connection.client.get_or_init(|| client).clone()
            }
        };
        let options = RequestOptions {
            timeout: Some(left.min(CALL_TIMEOUT).max(Duration::from_millis(1))),
            traceparent: Some(run.traceparent()),
            ..RequestOptions::default()
        };
        match run.guard(lua, client.request_with(request, options)).await? {
            Ok(reply) => {
                connection.answering.store(true, Ordering::Relaxed);
                Ok(Ok(reply))
            }
            Err(hooteproto::Error::Remote(status)) => {
                connection.answering.store(true, Ordering::Relaxed);
                Ok(Err(status))
            }
            Err(hooteproto::Error::DeadlineExceeded { .. }) if left < CALL_TIMEOUT => {
                // The call was given the run's remaining time and used it up (the SDK gives
                // up a retry's backoff early), so the run has hit its limit, not the call.
                connection.answering.store(false, Ordering::Relaxed);
                run.out_of_time(lua)
            }
            Err(error) => {
                connection.answering.store(false, Ordering::Relaxed);
                Err(fail(function, format!("{}: {error}", peer.title())))
            }
        }
    }
}

/// Whether `endpoint` accepts connections now: a TCP connect (or a Unix socket connect for
/// `ipc://`), so a stopped service is reported at once instead of at the call's deadline.
async fn probe(endpoint: &str, within: Duration) -> Result<(), String> {
    let attempt = async {
        if let Some(address) = endpoint.strip_prefix("tcp://") {
            tokio::net::TcpStream::connect(address).await.map(drop)
        } else if let Some(path) = endpoint.strip_prefix("ipc://") {
            tokio::net::UnixStream::connect(path).await.map(drop)
        } else {
            Ok(())
        }
    };
    match tokio::time::timeout(within, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err("connection refused (is it running?)".into())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no connection within {within:?}")),
    }
}

/// A reply as the Lua value of its tool JSON form.
pub(crate) fn reply_to_lua(lua: &Lua, function: &str, reply: Payload) -> mlua::Result<LuaValue> {
    let json = hooteproto::json::tool_result(reply).map_err(|e| fail(function, e))?;
    json_to_lua(lua, function, json)
}

/// A JSON value as a Lua value (null as nil, arrays 1-based).
pub(crate) fn json_to_lua(lua: &Lua, function: &str, json: serde_json::Value) -> mlua::Result<LuaValue> {
    to_lua(lua, &hooteproto::wkt::json_to_value(json), 0).map_err(|e| fail(function, e))
}

/// `field` of a reply's tool JSON form (e.g. the `state` of a transport reply).
pub(crate) fn reply_field(lua: &Lua, function: &str, reply: Payload, field: &str) -> mlua::Result<LuaValue> {
    let json = hooteproto::json::tool_result(reply).map_err(|e| fail(function, e))?;
    json_to_lua(
        lua,
        function,
        json.get(field).cloned().unwrap_or(serde_json::Value::Null),
    )
}

/// Reads optional named arguments from a Lua options table, with errors that name them.
pub(crate) struct Options<'a> {
    function: &'a str,
    table: Option<mlua::Table>,
}

impl<'a> Options<'a> {
    pub(crate) fn new(function: &'a str, table: Option<mlua::Table>) -> Self {
        Self { function, table }
    }

    fn raw(&self, key: &str) -> mlua::Result<LuaValue> {
        match &self.table {
            Some(table) => table.raw_get(key),
            None => Ok(LuaValue::Nil),
        }
    }

    pub(crate) fn number(&self, key: &str) -> mlua::Result<Option<f64>> {
        match self.raw(key)? {
            LuaValue::Nil => Ok(None),
            LuaValue::Integer(i) => Ok(Some(i as f64)),
            LuaValue::Number(n) if n.is_finite() => Ok(Some(n)),
            other => Err(fail(
                self.function,
                format!("`{key}` must be a finite number, not {}", other.type_name()),
            )),
        }
    }

    pub(crate) fn required_number(&self, key: &str) -> mlua::Result<f64> {
        self.number(key)?
            .ok_or_else(|| fail(self.function, format!("`{key}` is required")))
    }

    pub(crate) fn text(&self, key: &str) -> mlua::Result<Option<String>> {
        match self.raw(key)? {
            LuaValue::Nil => Ok(None),
            LuaValue::String(s) => Ok(Some(s.to_str()?.to_string())),
            other => Err(fail(
                self.function,
                format!("`{key}` must be a string, not {}", other.type_name()),
            )),
        }
    }

    pub(crate) fn required_text(&self, key: &str) -> mlua::Result<String> {
        self.text(key)?
            .ok_or_else(|| fail(self.function, format!("`{key}` is required")))
    }

    /// A list of strings (`{"a", "b"}`), or one string as a list of one.
    pub(crate) fn texts(&self, key: &str) -> mlua::Result<Vec<String>> {
        match self.raw(key)? {
            LuaValue::Nil => Ok(Vec::new()),
            LuaValue::String(s) => Ok(vec![s.to_str()?.to_string()]),
            LuaValue::Table(table) => table
                .sequence_values::<LuaValue>()
                .map(|item| match item? {
                    LuaValue::String(s) => Ok(s.to_str()?.to_string()),
                    other => Err(fail(
                        self.function,
                        format!("`{key}` must list strings, not {}", other.type_name()),
                    )),
                })
                .collect(),
            other => Err(fail(
                self.function,
                format!("`{key}` must be a list of strings, not {}", other.type_name()),
            )),
        }
    }

    /// A table as a JSON object (bounded by the run's memory limit).
    pub(crate) fn object(&self, key: &str, run: &RunHandle) -> mlua::Result<Option<hooteproto::wkt::Struct>> {
        object_of(self.function, &format!("`{key}`"), self.raw(key)?, run)
    }
}

/// A Lua table (`what`, for errors) as a JSON object, bounded by the run's memory limit;
/// nil as None.
pub(crate) fn object_of(
    function: &str,
    what: &str,
    value: LuaValue,
    run: &RunHandle,
) -> mlua::Result<Option<hooteproto::wkt::Struct>> {
    match value {
        LuaValue::Nil => Ok(None),
        value @ LuaValue::Table(_) => {
            let value = crate::sandbox::from_lua_limited(&value, run.memory_limit())
                .map_err(|e| fail(function, format!("{what}: {e}")))?;
            match hooteproto::wkt::value_to_json(value) {
                serde_json::Value::Object(object) => Ok(Some(hooteproto::wkt::Struct::from_json(object))),
                // An empty table reads as an empty list.
                serde_json::Value::Array(items) if items.is_empty() => Ok(Some(hooteproto::wkt::Struct::default())),
                _ => Err(fail(function, format!("{what} must be a table with string keys"))),
            }
        }
        other => Err(fail(
            function,
            format!("{what} must be a table, not {}", other.type_name()),
        )),
    }
}
