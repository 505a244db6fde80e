//! Process-wide logging and tracing for service binaries (feature `telemetry`).
//!
//! Always installs `tracing` with an OpenTelemetry layer, so spans have W3C trace ids and
//! `traceparent` propagates through HOOT/1 even when nothing is exported. With an OTLP
//! endpoint (`--otlp-endpoint`, else `OTEL_EXPORTER_OTLP_ENDPOINT`) spans are exported over
//! OTLP/HTTP (protobuf) in batches, and metrics (services register them with
//! `opentelemetry::global::meter`) every `OTEL_METRIC_EXPORT_INTERVAL` milliseconds (default
//! 60 s); without an endpoint no meter provider is installed and no metric is ever computed.
//! `OTEL_SERVICE_NAME` overrides the service name and `OTEL_TRACES_SAMPLER` the sampler, as
//! the OpenTelemetry SDK defines them. Logs go to
//! stderr, filtered by `RUST_LOG` (default `info`), as text or JSON lines.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::Error;

/// Keeps the tracer provider alive; dropping it flushes and shuts down the exporter.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
    meters: Option<SdkMeterProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("telemetry: flushing spans failed: {e}");
        }
        if let Some(meters) = &self.meters
            && let Err(e) = meters.shutdown()
        {
            eprintln!("telemetry: flushing metrics failed: {e}");
        }
    }
}

/// The OTLP/HTTP traces URL for an endpoint: a bare base URL gets `/v1/traces`.
fn traces_url(endpoint: &str) -> String {
    signal_url(endpoint, "traces")
}

/// The OTLP/HTTP URL of a signal (`traces`, `metrics`) for an endpoint: a bare base URL gets
/// `/v1/<signal>`; one with a path names the traces URL, and its last segment is swapped.
fn signal_url(endpoint: &str, signal: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    let has_path = trimmed.splitn(4, '/').nth(3).is_some_and(|path| !path.is_empty());
    match (has_path, trimmed.strip_suffix("/traces")) {
        (false, _) => format!("{trimmed}/v1/{signal}"),
        (true, Some(base)) => format!("{base}/{signal}"),
        (true, None) => trimmed.to_string(),
    }
}

/// Installs the global subscriber. Call once, early in `main`, and keep the guard.
pub fn init(service_name: &str, otlp_endpoint: Option<&str>, log_json: bool) -> Result<TelemetryGuard, Error> {
    let name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| service_name.into());
    let endpoint = otlp_endpoint
        .map(str::to_string)
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .filter(|e| !e.is_empty());
    let mut builder =
        SdkTracerProvider::builder().with_resource(Resource::builder().with_service_name(name.clone()).build());
    if let Some(endpoint) = &endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(traces_url(endpoint))
            .build()
            .map_err(|e| Error::Config(format!("OTLP exporter for {endpoint}: {e}")))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let meters = match &endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_endpoint(signal_url(endpoint, "metrics"))
                .build()
                .map_err(|e| Error::Config(format!("OTLP metrics exporter for {endpoint}: {e}")))?;
            let meters = SdkMeterProvider::builder()
                .with_resource(Resource::builder().with_service_name(name.clone()).build())
                .with_periodic_exporter(exporter)
                .build();
            opentelemetry::global::set_meter_provider(meters.clone());
            Some(meters)
        }
        None => None,
    };
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer(name));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let installed = if log_json {
        registry
            .with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr))
            .try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
    installed.map_err(|e| Error::Config(format!("a tracing subscriber is already installed: {e}")))?;
    if let Some(endpoint) = endpoint {
        tracing::info!(%endpoint, "exporting traces over OTLP/HTTP");
    }
    Ok(TelemetryGuard { provider, meters })
}

#[cfg(test)]
mod tests {
    #[test]
    fn traces_url_appends_the_signal_path_to_a_base_url_only() {
        assert_eq!(
            super::traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            super::traces_url("http://127.0.0.1:4318/"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            super::traces_url("http://collector/custom/traces"),
            "http://collector/custom/traces"
        );
        assert_eq!(
            super::signal_url("http://127.0.0.1:4318", "metrics"),
            "http://127.0.0.1:4318/v1/metrics"
        );
        assert_eq!(
            super::signal_url("http://collector/custom/traces", "metrics"),
            "http://collector/custom/metrics"
        );
    }
}
