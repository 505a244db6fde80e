//! W3C Trace Context across HOOT/1: the client puts the current span's `traceparent`
//! into each Envelope; the server makes its handling span a child of it.
//!
//! This works through `tracing` + `tracing-opentelemetry`: when the process has no
//! OpenTelemetry layer installed there is no span context and the field stays empty.

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

const TRACEPARENT: &str = "traceparent";

/// The `traceparent` of the current `tracing` span, or "" when it has no valid span context.
pub fn current_traceparent() -> String {
    traceparent_of(&tracing::Span::current().context())
}

/// The `traceparent` of an OpenTelemetry context, or "" when it has no valid span context.
pub fn traceparent_of(context: &Context) -> String {
    if !context.span().span_context().is_valid() {
        return String::new();
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(context, &mut carrier);
    carrier.remove(TRACEPARENT).unwrap_or_default()
}

/// The remote parent context named by a `traceparent` (empty or invalid: no parent).
pub fn context_from(traceparent: &str) -> Context {
    if traceparent.is_empty() {
        return Context::new();
    }
    let carrier = HashMap::from([(TRACEPARENT.to_string(), traceparent.to_string())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// Makes `span` a child of the remote span named by `traceparent`, if any.
pub fn set_remote_parent(span: &tracing::Span, traceparent: &str) {
    if traceparent.is_empty() {
        return;
    }
    let parent = context_from(traceparent);
    if parent.span().span_context().is_valid() {
        // Fails only when the span is disabled; then there is nothing to link.
        let _ = span.set_parent(parent);
    }
}
