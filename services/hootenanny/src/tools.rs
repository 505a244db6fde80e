//! What Hootenanny offers agents besides its tools (which the schema declares): its
//! resources (the GraphQL SDL).

use hooteproto::Status;
use hooteproto::v1 as pb;

use crate::graph::GraphSchema;

/// URI of the GraphQL schema resource.
pub const GRAPH_SCHEMA_URI: &str = "hootenanny://graph/schema.graphql";

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
