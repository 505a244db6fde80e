//! # holler — how agents and people reach Hootenanny
//!
//! - [`backends`]: the three services behind one set of SDK clients; typed calls routed by the
//!   schema's tool catalog, and the one job-wait loop (`wait_job`).
//! - [`mcp`]: the MCP `ServerHandler` (tools discovered from the backends at run time).
//! - [`catalog`]: resources, prompts and completions passed through to the backends.
//! - [`serve`]: `holler serve`, MCP over Streamable HTTP with Origin and token checks.
//! - [`studio`]: the studio, a page on the gateway to see and hear what the agents made, and its
//!   HTTP API (`/api/*`, one SSE stream).
//! - [`stdio`]: `holler mcp`, MCP over stdin/stdout for hosts that launch servers as a command.
//! - [`up`]: `holler up`, every service and the gateway in one process.
//! - `cli` (in the binary): the `holler` commands that talk ZMQ to a backend directly.

pub mod backends;
pub mod catalog;
pub mod mcp;
pub mod serve;
pub mod stdio;
pub mod studio;
pub mod up;
