//! The graph: GraphQL (async-graphql) over artifacts, their lineage, tags, creators, CAS
//! objects and device bindings. `GraphQuery{query, variables, operation_name}` is a GraphQL
//! request; the SDL is served as the resource `hootenanny://graph/schema.graphql`.

use std::collections::{HashSet, VecDeque};

use async_graphql::{Context, EmptyMutation, EmptySubscription, ID, Json, Object, Schema};
use hooteproto::v1::{Artifact, Binding};

use crate::artifacts::Store;
use crate::objects;

/// The schema type.
pub type GraphSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// Deepest query accepted, and the most fields one query may resolve.
const MAX_DEPTH: usize = 16;
const MAX_COMPLEXITY: usize = 5_000;
/// Most ancestors one `ancestors` field walks.
const MAX_ANCESTORS: usize = 1_000;

/// Builds the schema over a store and a CAS.
pub fn schema(store: Store, cas: cas::Cas) -> GraphSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .data(store)
        .data(cas)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .finish()
}

fn store<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Store> {
    ctx.data::<Store>()
}

fn gql(status: hooteproto::Status) -> async_graphql::Error {
    async_graphql::Error::new(status.message)
}

/// Root queries.
pub struct Query;

#[Object]
impl Query {
    /// One artifact by id.
    async fn artifact(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<ArtifactNode>> {
        Ok(store(ctx)?.get(&id).map_err(gql)?.map(ArtifactNode))
    }

    /// Artifacts, newest first, optionally by tag and creator.
    async fn artifacts(
        &self,
        ctx: &Context<'_>,
        tag: Option<String>,
        creator: Option<String>,
        #[graphql(default = 50)] first: usize,
    ) -> async_graphql::Result<Vec<ArtifactNode>> {
        let (page, _) = store(ctx)?
            .list(
                tag.as_deref().unwrap_or(""),
                creator.as_deref().unwrap_or(""),
                first,
                "",
            )
            .map_err(gql)?;
        Ok(page.into_iter().map(ArtifactNode).collect())
    }

    /// A CAS object's metadata, by full hash or unique prefix.
    async fn cas_object(&self, ctx: &Context<'_>, hash: String) -> async_graphql::Result<Option<CasObjectNode>> {
        let cas = ctx.data::<cas::Cas>()?;
        match cas.resolve(&hash).and_then(|h| objects::inspect(cas, &h)) {
            Ok(info) => Ok(Some(CasObjectNode(info))),
            Err(e) if e.kind() == cas::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(gql(objects::status(e))),
        }
    }

    /// A device binding by identity.
    async fn binding(&self, ctx: &Context<'_>, identity: String) -> async_graphql::Result<Option<BindingNode>> {
        Ok(store(ctx)?.binding(&identity).map_err(gql)?.map(BindingNode))
    }

    /// Every device binding.
    async fn bindings(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<BindingNode>> {
        Ok(store(ctx)?
            .bindings()
            .map_err(gql)?
            .into_iter()
            .map(BindingNode)
            .collect())
    }

    /// Every tag in use.
    async fn tags(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        store(ctx)?.index_values(true).map_err(gql)
    }

    /// Every creator.
    async fn creators(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        store(ctx)?.index_values(false).map_err(gql)
    }
}

fn rfc3339(timestamp: &Option<prost_types::Timestamp>) -> Option<String> {
    timestamp.as_ref().map(|t| t.to_string())
}

/// An artifact in the graph.
pub struct ArtifactNode(pub Artifact);

#[Object(name = "Artifact")]
impl ArtifactNode {
    async fn id(&self) -> ID {
        ID(self.0.artifact_id.clone())
    }
    async fn cas_hash(&self) -> &str {
        &self.0.cas_hash
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn tags(&self) -> &[String] {
        &self.0.tags
    }
    async fn creator(&self) -> &str {
        &self.0.creator
    }
    async fn created_at(&self) -> Option<String> {
        rfc3339(&self.0.created_at)
    }
    /// Free-form metadata as JSON.
    async fn metadata(&self) -> Json<serde_json::Value> {
        let object = self
            .0
            .metadata
            .as_ref()
            .and_then(|m| m.to_json().ok())
            .unwrap_or_default();
        Json(serde_json::Value::Object(object))
    }
    /// The CAS object it names.
    async fn object(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<CasObjectNode>> {
        Query.cas_object(ctx, self.0.cas_hash.clone()).await
    }
    /// The artifacts it was derived from.
    async fn parents(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ArtifactNode>> {
        let store = store(ctx)?;
        let mut parents = Vec::new();
        for id in &self.0.parent_ids {
            if let Some(parent) = store.get(id).map_err(gql)? {
                parents.push(ArtifactNode(parent));
            }
        }
        Ok(parents)
    }
    /// The artifacts derived from it.
    async fn children(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ArtifactNode>> {
        let store = store(ctx)?;
        let mut children = Vec::new();
        for id in store.children_of(&self.0.artifact_id).map_err(gql)? {
            if let Some(child) = store.get(&id).map_err(gql)? {
                children.push(ArtifactNode(child));
            }
        }
        Ok(children)
    }
    /// Every ancestor, nearest first (breadth-first; at most 1,000).
    async fn ancestors(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ArtifactNode>> {
        let store = store(ctx)?;
        let mut seen = HashSet::new();
        let mut queue: VecDeque<String> = self.0.parent_ids.iter().cloned().collect();
        let mut ancestors = Vec::new();
        while let Some(id) = queue.pop_front() {
            if ancestors.len() >= MAX_ANCESTORS || !seen.insert(id.clone()) {
                continue;
            }
            if let Some(artifact) = store.get(&id).map_err(gql)? {
                queue.extend(artifact.parent_ids.iter().cloned());
                ancestors.push(ArtifactNode(artifact));
            }
        }
        Ok(ancestors)
    }
}

/// A CAS object in the graph.
pub struct CasObjectNode(pub cas::ObjectInfo);

#[Object(name = "CasObject")]
impl CasObjectNode {
    async fn hash(&self) -> String {
        self.0.hash.to_string()
    }
    async fn size(&self) -> u64 {
        self.0.size
    }
    async fn mime_type(&self) -> &str {
        &self.0.mime_type
    }
    async fn created_at(&self) -> String {
        prost_types::Timestamp::from(self.0.created_at).to_string()
    }
}

/// A device binding in the graph.
pub struct BindingNode(pub Binding);

#[Object(name = "Binding")]
impl BindingNode {
    async fn identity(&self) -> &str {
        &self.0.identity
    }
    async fn midi_port_patterns(&self) -> Vec<String> {
        self.0
            .hints
            .as_ref()
            .map(|h| h.midi_port_patterns.clone())
            .unwrap_or_default()
    }
    async fn usb_ids(&self) -> Vec<String> {
        self.0.hints.as_ref().map(|h| h.usb_ids.clone()).unwrap_or_default()
    }
    async fn audio_device_names(&self) -> Vec<String> {
        self.0
            .hints
            .as_ref()
            .map(|h| h.audio_device_names.clone())
            .unwrap_or_default()
    }
    async fn updated_at(&self) -> Option<String> {
        rfc3339(&self.0.updated_at)
    }
}
