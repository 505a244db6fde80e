//! What Hootenanny offers agents: its tools (input schemas derived from the request
//! messages in `schema/`, so they never drift) and its resources (the GraphQL SDL).

use hooteproto::Status;
use hooteproto::v1 as pb;

use crate::graph::GraphSchema;

/// URI of the GraphQL schema resource.
pub const GRAPH_SCHEMA_URI: &str = "hootenanny://graph/schema.graphql";

/// (tool name, request message, description)
const TOOLS: &[(&str, &str, &str)] = &[
    (
        "cas_store",
        "CasStoreRequest",
        "Store bytes (base64 `data`, with a MIME type) in the content-addressed store; returns the BLAKE3 hash. Storing identical content again is a no-op. Files larger than the message limit are imported on the host instead (`holler cas put`).",
    ),
    (
        "cas_inspect",
        "CasInspectRequest",
        "Size, MIME type and creation time of a CAS object, by full hash or a unique prefix of at least 8 characters.",
    ),
    (
        "cas_get",
        "CasGetRequest",
        "Read a CAS object's bytes (base64), whole or a byte range (offset, length).",
    ),
    (
        "artifact_create",
        "ArtifactCreateRequest",
        "Name an existing CAS object as an artifact, with tags, creator, free-form metadata and parent artifacts (its lineage).",
    ),
    ("artifact_get", "ArtifactGetRequest", "One artifact by id."),
    (
        "artifact_list",
        "ArtifactListRequest",
        "Artifacts newest first, filtered by tag and/or creator, in pages (page_size, page_token).",
    ),
    (
        "graph_query",
        "GraphQueryRequest",
        "Run a GraphQL query over artifacts, their lineage (parents, children, ancestors), tags, creators, CAS objects and device bindings. The schema is the resource hootenanny://graph/schema.graphql. A query is priced before it runs, each list at its bound (its `first` argument, or 64 parents, 1000 ancestors): pass a smaller `first` if one is refused as over budget.",
    ),
    (
        "graph_bind",
        "GraphBindRequest",
        "Bind a stable identity (e.g. \"bass-synth\") to device hints (MIDI port name patterns, USB ids, audio device names) so services can find the device by name.",
    ),
];

/// The tools, with JSON Schemas of their requests.
pub fn tools() -> Result<Vec<pb::ToolInfo>, Status> {
    TOOLS
        .iter()
        .map(|(name, message, description)| {
            hooteproto::json::tool_info(name, message, description).map_err(|e| Status::internal(e.to_string()))
        })
        .collect()
}

/// The resources.
pub fn resources() -> pb::ListResourcesReply {
    pb::ListResourcesReply {
        resources: vec![pb::Resource {
            uri: GRAPH_SCHEMA_URI.into(),
            name: "graph-schema".into(),
            description: "The GraphQL schema (SDL) that graph_query runs against.".into(),
            mime_type: "application/graphql".into(),
        }],
        templates: Vec::new(),
        next_cursor: String::new(),
    }
}

/// Reads a resource.
pub fn read_resource(uri: &str, schema: &GraphSchema) -> Result<pb::ReadResourceReply, Status> {
    if uri != GRAPH_SCHEMA_URI {
        return Err(Status::not_found(format!(
            "no resource {uri:?}; hootenanny offers {GRAPH_SCHEMA_URI}"
        )));
    }
    Ok(pb::ReadResourceReply {
        contents: vec![pb::ResourceContent {
            uri: uri.into(),
            mime_type: "application/graphql".into(),
            content: Some(pb::resource_content::Content::Text(schema.sdl())),
        }],
    })
}
