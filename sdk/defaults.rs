//! Where everything listens by default: the one place the conventional endpoints and ports
//! are written down (`docs` and `/work/shared/conventions.md` describe the same table).
//! Services, the `holler` CLI and gateway, and the tests read them from here.
//!
//! | service | HOOT/1 ROUTER | other | gRPC health |
//! |---|---|---|---|
//! | luanette | 5570 | PUB 5572 | 6570 |
//! | hootenanny | 5580 | | 6580 |
//! | chaosgarden | 5555 | | 6555 |
//! | holler serve / up | | HTTP 8080 | |
//!
//! Everything binds 127.0.0.1 unless told otherwise.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::tools::Service;

/// A service's defaults: its endpoints and the environment variables that override them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceDefaults {
    /// The service's name, as logs, health and `ping` report it.
    pub name: &'static str,
    /// Its HOOT/1 ROUTER endpoint.
    pub bind: &'static str,
    /// The variable that overrides `--bind`.
    pub bind_env: &'static str,
    /// Its grpc.health.v1 address.
    pub health_bind: &'static str,
    /// The variable that overrides `--health-bind`.
    pub health_bind_env: &'static str,
    /// The port of `health_bind`.
    pub health_port: u16,
}

impl ServiceDefaults {
    /// The default grpc.health.v1 address as a socket address.
    pub const fn health_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.health_port)
    }
}

/// Luanette: Lua orchestration.
pub const LUANETTE: ServiceDefaults = ServiceDefaults {
    name: "luanette",
    bind: "tcp://127.0.0.1:5570",
    bind_env: "LUANETTE_BIND",
    health_bind: "127.0.0.1:6570",
    health_bind_env: "LUANETTE_HEALTH_BIND",
    health_port: 6570,
};

/// Luanette's broadcast (PUB) endpoint.
pub const LUANETTE_PUB: &str = "tcp://127.0.0.1:5572";

/// Hootenanny: storage, artifacts, graph.
pub const HOOTENANNY: ServiceDefaults = ServiceDefaults {
    name: "hootenanny",
    bind: "tcp://127.0.0.1:5580",
    bind_env: "HOOTENANNY_BIND",
    health_bind: "127.0.0.1:6580",
    health_bind_env: "HOOTENANNY_HEALTH_BIND",
    health_port: 6580,
};

/// Chaosgarden: transport and timeline.
pub const CHAOSGARDEN: ServiceDefaults = ServiceDefaults {
    name: "chaosgarden",
    bind: "tcp://127.0.0.1:5555",
    bind_env: "CHAOSGARDEN_BIND",
    health_bind: "127.0.0.1:6555",
    health_bind_env: "CHAOSGARDEN_HEALTH_BIND",
    health_port: 6555,
};

/// The HTTP port of the MCP gateway (`holler serve`, `holler up`; `HOLLER_PORT`).
pub const HOLLER_PORT: u16 = 8080;

/// The gateway's default listening address (127.0.0.1:[`HOLLER_PORT`]).
pub const HOLLER_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), HOLLER_PORT);

impl Service {
    /// The service's default endpoints.
    pub const fn defaults(self) -> &'static ServiceDefaults {
        match self {
            Service::Luanette => &LUANETTE,
            Service::Hootenanny => &HOOTENANNY,
            Service::Chaosgarden => &CHAOSGARDEN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_has_its_own_ports_and_they_agree_with_themselves() {
        let all = [LUANETTE, HOOTENANNY, CHAOSGARDEN];
        for d in &all {
            assert_eq!(
                d.health_bind.parse::<SocketAddr>().ok(),
                Some(d.health_addr()),
                "{}",
                d.name
            );
            assert!(d.bind.starts_with("tcp://127.0.0.1:"), "{}", d.bind);
            assert!(d.bind_env.ends_with("_BIND") && d.health_bind_env.ends_with("_HEALTH_BIND"));
        }
        let mut ports: Vec<&str> = all.iter().map(|d| d.bind).chain([LUANETTE_PUB]).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 4, "endpoints collide");
        assert_eq!(Service::Hootenanny.defaults().name, "hootenanny");
    }
}
