//! The graph: GraphQL (async-graphql) over artifacts, their lineage, tags, creators, CAS
//! objects and device bindings. `GraphQuery{query, variables, operation_name}` is a GraphQL
//! request; the SDL is served as the resource `hootenanny://graph/schema.graphql`.
//!
//! ## Queries are priced before they run, and metered while they run
//! 1. [`run`] refuses a document over [`MAX_QUERY_BYTES`], then [`shape`] walks it with its
//!    fragments expanded (memoised, so a fragment that spreads another many times costs its
//!    size, not its expansion): at most `max_aliases` aliases, `max_depth` levels, and no more
//!    fields than `max_cost`.
//! 2. Validation prices it with async-graphql's complexity: a field costs 1 plus what it
//!    selects, and a list field costs its declared bound (its `first`, or the most the schema
//!    allows: 64 parents, 1,000 ancestors, …) times what each item selects. The [`Pricing`]
//!    extension refuses a price over `max_cost`, naming the price.
//! 3. Execution (on a blocking thread, see `service.rs`): every resolver charges the query's
//!    [`Budget`] a node per artifact, CAS object, binding, tag or creator it reads and the
//!    bytes of each string it returns, and checks the deadline. A query that slips past the
//!    price still stops at `max_nodes`, `max_bytes` or `timeout`.
//!
//! A refusal fails the whole request with INVALID_ARGUMENT (priced too high),
//! RESOURCE_EXHAUSTED (a budget ran out) or DEADLINE_EXCEEDED, naming the budget and its flag.
//! Other GraphQL errors (an unknown field, a bad argument) stay errors in the reply.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{
    Context, EmptyMutation, EmptySubscription, ID, Json, Name, Object, Positioned, Schema, ServerError,
    ValidationResult,
};
use hooteproto::Status;
use hooteproto::v1::{self as pb, Artifact, Binding};

use crate::artifacts::{DEFAULT_PAGE, MAX_PAGE, MAX_PARENTS, MAX_TAGS};
use crate::objects;
use crate::store::Store;

/// The schema type.
pub type GraphSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// Largest query document, and largest encoded variables.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;
/// Most directives on one field.
const MAX_DIRECTIVES: usize = 4;
/// Most ancestors one `ancestors` field walks, and its default.
const MAX_ANCESTORS: usize = 1_000;
/// Most children one `children` field lists (default 100).
const MAX_CHILDREN: usize = 1_000;
/// Most tags, creators or bindings one root list returns (default 1,000).
const MAX_VALUES: usize = 10_000;
/// The price of a list is capped here, so sums of prices cannot overflow.
const PRICE_CEILING: usize = 1 << 40;

/// The budgets of one `graph_query`. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphLimits {
    /// Highest price: a field costs 1 plus what it selects; a list field its bound times what
    /// each item selects.
    pub max_cost: usize,
    /// Deepest nesting of fields.
    pub max_depth: usize,
    /// Most aliased fields, fragments expanded.
    pub max_aliases: usize,
    /// Most artifacts, CAS objects, bindings, tags and creators one query reads.
    pub max_nodes: usize,
    /// Most bytes of text one query returns.
    pub max_bytes: usize,
    /// How long one query may run.
    pub timeout: Duration,
    /// Queries run at once; more wait for a slot (within their deadline).
    pub max_concurrent: usize,
}

impl Default for GraphLimits {
    fn default() -> Self {
        Self {
            max_cost: 100_000,
            max_depth: 16,
            max_aliases: 32,
            max_nodes: 10_000,
            max_bytes: 8 * 1024 * 1024,
            timeout: Duration::from_secs(5),
            max_concurrent: 4,
        }
    }
}

/// Builds the schema over a store and a CAS.
pub fn schema(store: Store, cas: cas::Cas, limits: &GraphLimits) -> GraphSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .data(store)
        .data(cas)
        // `shape` checks depth first and names the budget; this is the library's backstop.
        .limit_depth(limits.max_depth)
        .limit_recursive_depth(max_nesting(limits))
        .limit_directives(MAX_DIRECTIVES)
        .extension(Pricing {
            max_cost: limits.max_cost,
        })
        .finish()
}

/// What one query may still spend; shared by its resolvers through the request's data.
pub struct Budget {
    max_nodes: usize,
    max_bytes: usize,
    deadline: Instant,
    timeout: Duration,
    nodes: AtomicUsize,
    bytes: AtomicUsize,
    refusal: Mutex<Option<Status>>,
}

impl Budget {
    /// A fresh budget that ends at `deadline` (`timeout` after the query was accepted).
    pub fn new(limits: &GraphLimits, deadline: Instant, timeout: Duration) -> Self {
        Self {
            max_nodes: limits.max_nodes,
            max_bytes: limits.max_bytes,
            deadline,
            timeout,
            nodes: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            refusal: Mutex::new(None),
        }
    }

    /// Records why the query is refused (the first reason wins) and fails the resolver.
    fn refuse(&self, status: Status) -> async_graphql::Error {
        let error = async_graphql::Error::new(status.message.clone());
        self.refusal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(status);
        error
    }

    fn check_deadline(&self) -> async_graphql::Result<()> {
        if Instant::now() >= self.deadline {
            return Err(self.refuse(Status::deadline_exceeded(format!(
                "the query ran past its deadline of {} ms (the graph timeout, --graph-timeout-ms, or the \
                 request's own); ask for less",
                self.timeout.as_millis()
            ))));
        }
        Ok(())
    }

    /// Charges `count` nodes read.
    pub fn nodes(&self, count: usize) -> async_graphql::Result<()> {
        let used = self.nodes.fetch_add(count, Ordering::Relaxed).saturating_add(count);
        if used > self.max_nodes {
            return Err(self.refuse(Status::resource_exhausted(format!(
                "the query reads more than {} artifacts, objects, bindings, tags and creators, its graph node \
                 budget (--graph-max-nodes); ask for fewer levels or a smaller `first`",
                self.max_nodes
            ))));
        }
        self.check_deadline()
    }

    /// Charges `count` bytes of text returned.
    pub fn bytes(&self, count: usize) -> async_graphql::Result<()> {
        let used = self.bytes.fetch_add(count, Ordering::Relaxed).saturating_add(count);
        if used > self.max_bytes {
            return Err(self.refuse(Status::resource_exhausted(format!(
                "the query returns more than {} bytes of text, its graph byte budget (--graph-max-bytes); \
                 select fewer fields or fewer items",
                self.max_bytes
            ))));
        }
        self.check_deadline()
    }

    /// Why the query was refused, if it was.
    pub fn refusal(&self) -> Option<Status> {
        self.refusal.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Prices a validated query with async-graphql's complexity (list fields at their bounds).
struct Pricing {
    max_cost: usize,
}

impl ExtensionFactory for Pricing {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Pricing {
            max_cost: self.max_cost,
        })
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Pricing {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        if result.complexity > self.max_cost {
            let status = over_cost(result.complexity, self.max_cost, "");
            let error = ServerError::new(status.message.clone(), None);
            if let Ok(budget) = ctx.data::<Arc<Budget>>() {
                budget.refuse(status);
            }
            return Err(vec![error]);
        }
        Ok(result)
    }
}

fn over_cost(cost: usize, max_cost: usize, at_least: &str) -> Status {
    Status::invalid_argument(format!(
        "the query costs {at_least}{cost}, over the graph cost budget of {max_cost} (--graph-max-cost): each \
         list is priced at its bound (its `first`, or 64 parents, 1000 ancestors, 100 children, 50 artifacts) \
         times what each item selects; ask for fewer levels or a smaller `first`"
    ))
}

/// The size of a document with its fragments expanded.
#[derive(Debug, Clone, Copy, Default)]
struct Shape {
    /// Fields.
    fields: usize,
    /// Aliased fields.
    aliases: usize,
    /// Deepest nesting of fields (as async-graphql's `limit_depth` counts).
    depth: usize,
    /// Deepest nesting of selection sets through fields and fragments (as its
    /// `limit_recursive_depth` counts).
    nesting: usize,
}

impl Shape {
    fn add(&mut self, part: Shape) {
        self.fields = self.fields.saturating_add(part.fields);
        self.aliases = self.aliases.saturating_add(part.aliases);
        self.depth = self.depth.max(part.depth);
        self.nesting = self.nesting.max(part.nesting);
    }
}

/// The most nested selection sets async-graphql walks (`limit_recursive_depth`).
fn max_nesting(limits: &GraphLimits) -> usize {
    limits.max_depth.max(32)
}

/// Measures `doc` with fragments expanded, memoising each fragment, and refuses it if it is
/// over a budget (or spreads a fragment inside itself).
fn shape(doc: &ExecutableDocument, limits: &GraphLimits) -> Result<Shape, Status> {
    struct Walk<'d> {
        doc: &'d ExecutableDocument,
        done: HashMap<&'d Name, Shape>,
        open: HashSet<&'d Name>,
        max_nesting: usize,
    }
    impl<'d> Walk<'d> {
        /// The shape of `set`, which is `nesting` sets deep; depths are relative to it.
        fn set(&mut self, set: &'d Positioned<SelectionSet>, nesting: usize) -> Result<Shape, Status> {
            if nesting > self.max_nesting {
                return Err(too_nested(self.max_nesting));
            }
            let mut total = Shape::default();
            for selection in &set.node.items {
                let part = match &selection.node {
                    Selection::Field(field) => {
                        let mut part = if field.node.selection_set.node.items.is_empty() {
                            Shape::default()
                        } else {
                            let inner = self.set(&field.node.selection_set, nesting + 1)?;
                            Shape {
                                nesting: inner.nesting + 1,
                                ..inner
                            }
                        };
                        part.fields = part.fields.saturating_add(1);
                        part.aliases = part.aliases.saturating_add(usize::from(field.node.alias.is_some()));
                        part.depth += 1;
                        part
                    }
                    Selection::InlineFragment(fragment) => {
                        let inner = self.set(&fragment.node.selection_set, nesting + 1)?;
                        Shape {
                            nesting: inner.nesting + 1,
                            ..inner
                        }
                    }
                    Selection::FragmentSpread(spread) => {
                        let name = &spread.node.fragment_name.node;
                        let inner = if let Some(done) = self.done.get(name) {
                            *done
                        } else if let Some(fragment) = self.doc.fragments.get(name) {
                            if !self.open.insert(name) {
                                return Err(Status::invalid_argument(format!("fragment {name} spreads itself")));
                            }
                            let inner = self.set(&fragment.node.selection_set, nesting + 1)?;
                            self.open.remove(name);
                            self.done.insert(name, inner);
                            inner
                        } else {
                            Shape::default() // validation reports the unknown fragment
                        };
                        Shape {
                            nesting: inner.nesting + 1,
                            ..inner
                        }
                    }
                };
                total.add(part);
            }
            Ok(total)
        }
    }

    let mut walk = Walk {
        doc,
        done: HashMap::new(),
        open: HashSet::new(),
        max_nesting: max_nesting(limits),
    };
    let mut total = Shape::default();
    for (_, operation) in doc.operations.iter() {
        total.add(walk.set(&operation.node.selection_set, 0)?);
    }
    if total.depth > limits.max_depth {
        return Err(Status::invalid_argument(format!(
            "the query nests fields {} levels deep, over the graph depth budget of {} (--graph-max-depth)",
            total.depth, limits.max_depth
        )));
    }
    if total.nesting > walk.max_nesting {
        return Err(too_nested(walk.max_nesting));
    }
    if total.aliases > limits.max_aliases {
        return Err(Status::invalid_argument(format!(
            "the query uses {} aliases (fragments expanded), over the graph alias budget of {} \
             (--graph-max-aliases); ask for a list instead of repeating a field",
            total.aliases, limits.max_aliases
        )));
    }
    if total.fields > limits.max_cost {
        return Err(over_cost(total.fields, limits.max_cost, "at least "));
    }
    Ok(total)
}

fn too_nested(max_nesting: usize) -> Status {
    Status::invalid_argument(format!(
        "the query nests fields and fragments more than {max_nesting} levels deep, over the graph depth \
         budget (--graph-max-depth, at least 32 here)"
    ))
}

/// Runs one query to completion on the calling (blocking) thread: checks its size and shape,
/// executes it with a fresh [`Budget`] ending at `deadline`, and returns the reply, or the
/// refusal if a budget ran out.
pub fn run(
    schema: &GraphSchema,
    runtime: &tokio::runtime::Handle,
    limits: &GraphLimits,
    request: pb::GraphQueryRequest,
    deadline: Instant,
    timeout: Duration,
) -> Result<pb::GraphQueryReply, Status> {
    if request.query.len() > MAX_QUERY_BYTES {
        return Err(Status::invalid_argument(format!(
            "the query is {} bytes, over the {MAX_QUERY_BYTES}-byte limit; pass values as variables",
            request.query.len()
        )));
    }
    let variables = match request.variables {
        Some(variables) if variables.as_encoded().len() > MAX_QUERY_BYTES => {
            return Err(Status::invalid_argument(format!(
                "the variables are {} bytes, over the {MAX_QUERY_BYTES}-byte limit",
                variables.as_encoded().len()
            )));
        }
        Some(variables) => variables
            .to_json()
            .map_err(|e| Status::invalid_argument(format!("variables are malformed: {e}")))?,
        None => serde_json::Map::new(),
    };
    let budget = Arc::new(Budget::new(limits, deadline, timeout));
    let mut graphql = async_graphql::Request::new(request.query)
        .variables(async_graphql::Variables::from_json(serde_json::Value::Object(
            variables,
        )))
        .data(budget.clone());
    if !request.operation_name.is_empty() {
        graphql = graphql.operation_name(request.operation_name);
    }
    // A document that does not parse is answered by `execute` as a GraphQL error.
    if let Ok(doc) = graphql.parsed_query() {
        shape(doc, limits)?;
    }
    let response = runtime.block_on(schema.execute(graphql));
    if let Some(refusal) = budget.refusal() {
        return Err(refusal);
    }
    if Instant::now() >= deadline {
        return Err(Status::deadline_exceeded(format!(
            "the query ran past its deadline of {} ms (--graph-timeout-ms)",
            timeout.as_millis()
        )));
    }
    let data = serde_json::to_value(&response.data).map_err(|e| Status::internal(e.to_string()))?;
    let errors = response
        .errors
        .into_iter()
        .map(|e| pb::GraphQueryError {
            message: e.message,
            path: e
                .path
                .iter()
                .map(|segment| match segment {
                    async_graphql::PathSegment::Field(name) => name.clone(),
                    async_graphql::PathSegment::Index(i) => i.to_string(),
                })
                .collect(),
        })
        .collect();
    Ok(pb::GraphQueryReply {
        data: Some(hooteproto::wkt::json_to_value(data)),
        errors,
    })
}

/// The price of a list field: itself plus `bound` items, each at least 1.
fn list_cost(bound: usize, child_complexity: usize) -> usize {
    bound
        .saturating_mul(child_complexity.max(1))
        .saturating_add(1)
        .min(PRICE_CEILING)
}

/// How many artifacts `artifacts(first:)` returns at most.
fn page(first: usize) -> usize {
    if first == 0 { DEFAULT_PAGE } else { first.min(MAX_PAGE) }
}

fn store<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Store> {
    ctx.data::<Store>()
}

fn budget<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Budget> {
    ctx.data::<Arc<Budget>>().map(|budget| budget.as_ref())
}

/// Charges a string returned.
fn text<'s>(ctx: &Context<'_>, text: &'s str) -> async_graphql::Result<&'s str> {
    budget(ctx)?.bytes(text.len())?;
    Ok(text)
}

/// Charges a list of strings returned.
fn texts(ctx: &Context<'_>, texts: &[String]) -> async_graphql::Result<Vec<String>> {
    budget(ctx)?.bytes(texts.iter().map(String::len).sum())?;
    Ok(texts.to_vec())
}

fn gql(status: Status) -> async_graphql::Error {
    async_graphql::Error::new(status.message)
}

/// Root queries.
pub struct Query;

#[Object]
impl Query {
    /// One artifact by id.
    async fn artifact(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<ArtifactNode>> {
        budget(ctx)?.nodes(1)?;
        Ok(store(ctx)?.get(&id).await.map_err(gql)?.map(ArtifactNode))
    }

    /// Artifacts, newest first, optionally by tag, creator and the CAS object they name
    /// (`casHash`, 64 hex characters): at most `first` (up to 500).
    #[graphql(complexity = "list_cost(page(first), child_complexity)")]
    async fn artifacts(
        &self,
        ctx: &Context<'_>,
        tag: Option<String>,
        creator: Option<String>,
        cas_hash: Option<String>,
        #[graphql(default = 50)] first: usize,
    ) -> async_graphql::Result<Vec<ArtifactNode>> {
        let cas_hash = match cas_hash.as_deref() {
            None | Some("") => String::new(),
            Some(given) => cas::Hash::parse(given)
                .map_err(|e| gql(Status::invalid_argument(e.to_string())))?
                .to_string(),
        };
        let filter = crate::store::Filter {
            tag: tag.as_deref().unwrap_or(""),
            creator: creator.as_deref().unwrap_or(""),
            cas_hash: &cas_hash,
        };
        let (page, _) = store(ctx)?.list(&filter, first, "").await.map_err(gql)?;
        budget(ctx)?.nodes(page.len())?;
        Ok(page.into_iter().map(ArtifactNode).collect())
    }

    /// A CAS object's metadata, by full hash or unique prefix.
    async fn cas_object(&self, ctx: &Context<'_>, hash: String) -> async_graphql::Result<Option<CasObjectNode>> {
        budget(ctx)?.nodes(1)?;
        let cas = ctx.data::<cas::Cas>()?;
        match cas.resolve(&hash).and_then(|h| objects::inspect(cas, &h)) {
            Ok(info) => Ok(Some(CasObjectNode(info))),
            Err(e) if e.kind() == cas::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(gql(objects::status(e))),
        }
    }

    /// A device binding by identity.
    async fn binding(&self, ctx: &Context<'_>, identity: String) -> async_graphql::Result<Option<BindingNode>> {
        budget(ctx)?.nodes(1)?;
        Ok(store(ctx)?.binding(&identity).await.map_err(gql)?.map(BindingNode))
    }

    /// Device bindings by identity: at most `first` (up to 10,000).
    #[graphql(complexity = "list_cost(first.min(MAX_VALUES), child_complexity)")]
    async fn bindings(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 1000)] first: usize,
    ) -> async_graphql::Result<Vec<BindingNode>> {
        let bindings = store(ctx)?.bindings(first.min(MAX_VALUES)).await.map_err(gql)?;
        budget(ctx)?.nodes(bindings.len())?;
        Ok(bindings.into_iter().map(BindingNode).collect())
    }

    /// Tags in use, in order: at most `first` (up to 10,000).
    #[graphql(complexity = "list_cost(first.min(MAX_VALUES), child_complexity)")]
    async fn tags(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 1000)] first: usize,
    ) -> async_graphql::Result<Vec<String>> {
        let values = store(ctx)?
            .index_values(true, first.min(MAX_VALUES))
            .await
            .map_err(gql)?;
        budget(ctx)?.nodes(values.len())?;
        texts(ctx, &values)
    }

    /// Creators, in order: at most `first` (up to 10,000).
    #[graphql(complexity = "list_cost(first.min(MAX_VALUES), child_complexity)")]
    async fn creators(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 1000)] first: usize,
    ) -> async_graphql::Result<Vec<String>> {
        let values = store(ctx)?
            .index_values(false, first.min(MAX_VALUES))
            .await
            .map_err(gql)?;
        budget(ctx)?.nodes(values.len())?;
        texts(ctx, &values)
    }
}

fn rfc3339(ctx: &Context<'_>, timestamp: &Option<prost_types::Timestamp>) -> async_graphql::Result<Option<String>> {
    let text = timestamp.as_ref().map(|t| t.to_string());
    budget(ctx)?.bytes(text.as_ref().map_or(0, String::len))?;
    Ok(text)
}

/// An artifact in the graph.
pub struct ArtifactNode(pub Artifact);

#[Object(name = "Artifact")]
impl ArtifactNode {
    async fn id(&self, ctx: &Context<'_>) -> async_graphql::Result<ID> {
        Ok(ID(text(ctx, &self.0.artifact_id)?.to_string()))
    }
    async fn cas_hash(&self, ctx: &Context<'_>) -> async_graphql::Result<&str> {
        text(ctx, &self.0.cas_hash)
    }
    async fn name(&self, ctx: &Context<'_>) -> async_graphql::Result<&str> {
        text(ctx, &self.0.name)
    }
    #[graphql(complexity = "list_cost(MAX_TAGS, child_complexity)")]
    async fn tags(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        texts(ctx, &self.0.tags)
    }
    async fn creator(&self, ctx: &Context<'_>) -> async_graphql::Result<&str> {
        text(ctx, &self.0.creator)
    }
    async fn created_at(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        rfc3339(ctx, &self.0.created_at)
    }
    /// Free-form metadata as JSON.
    async fn metadata(&self, ctx: &Context<'_>) -> async_graphql::Result<Json<serde_json::Value>> {
        let metadata = self.0.metadata.as_ref();
        budget(ctx)?.bytes(metadata.map_or(0, |m| m.as_encoded().len()))?;
        let object = metadata.and_then(|m| m.to_json().ok()).unwrap_or_default();
        Ok(Json(serde_json::Value::Object(object)))
    }
    /// The CAS object it names.
    async fn object(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<CasObjectNode>> {
        Query.cas_object(ctx, self.0.cas_hash.clone()).await
    }
    /// The artifacts it was derived from (at most 64).
    #[graphql(complexity = "list_cost(MAX_PARENTS, child_complexity)")]
    async fn parents(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ArtifactNode>> {
        let (store, budget) = (store(ctx)?, budget(ctx)?);
        let mut seen = HashSet::new();
        let mut parents = Vec::new();
        // Artifacts stored before parents were deduplicated may name one several times.
        for id in self.0.parent_ids.iter().filter(|id| seen.insert(id.as_str())) {
            budget.nodes(1)?;
            if let Some(parent) = store.get(id).await.map_err(gql)? {
                parents.push(ArtifactNode(parent));
            }
        }
        Ok(parents)
    }
    /// The artifacts derived from it: at most `first` (up to 1,000).
    #[graphql(complexity = "list_cost(first.min(MAX_CHILDREN), child_complexity)")]
    async fn children(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: usize,
    ) -> async_graphql::Result<Vec<ArtifactNode>> {
        let (store, budget) = (store(ctx)?, budget(ctx)?);
        let mut children = Vec::new();
        for id in store
            .children_of(&self.0.artifact_id, first.min(MAX_CHILDREN))
            .await
            .map_err(gql)?
        {
            budget.nodes(1)?;
            if let Some(child) = store.get(&id).await.map_err(gql)? {
                children.push(ArtifactNode(child));
            }
        }
        Ok(children)
    }
    /// Ancestors, nearest first (breadth-first): at most `first` (up to 1,000, the default).
    #[graphql(complexity = "list_cost(first.min(MAX_ANCESTORS), child_complexity)")]
    async fn ancestors(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 1000)] first: usize,
    ) -> async_graphql::Result<Vec<ArtifactNode>> {
        let (store, budget) = (store(ctx)?, budget(ctx)?);
        let most = first.min(MAX_ANCESTORS);
        let mut seen = HashSet::new();
        let mut queue: VecDeque<String> = self.0.parent_ids.iter().cloned().collect();
        let mut ancestors = Vec::new();
        while let Some(id) = queue.pop_front() {
            if ancestors.len() >= most {
                break;
            }
            if !seen.insert(id.clone()) {
                continue;
            }
            budget.nodes(1)?;
            if let Some(artifact) = store.get(&id).await.map_err(gql)? {
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
    async fn hash(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        let hash = self.0.hash.to_string();
        budget(ctx)?.bytes(hash.len())?;
        Ok(hash)
    }
    async fn size(&self) -> u64 {
        self.0.size
    }
    async fn mime_type(&self, ctx: &Context<'_>) -> async_graphql::Result<&str> {
        text(ctx, &self.0.mime_type)
    }
    async fn created_at(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        let text = prost_types::Timestamp::from(self.0.created_at).to_string();
        budget(ctx)?.bytes(text.len())?;
        Ok(text)
    }
}

/// A device binding in the graph.
pub struct BindingNode(pub Binding);

impl BindingNode {
    fn hints(&self) -> pb::DeviceHints {
        self.0.hints.clone().unwrap_or_default()
    }
}

#[Object(name = "Binding")]
impl BindingNode {
    async fn identity(&self, ctx: &Context<'_>) -> async_graphql::Result<&str> {
        text(ctx, &self.0.identity)
    }
    #[graphql(complexity = "list_cost(MAX_TAGS, child_complexity)")]
    async fn midi_port_patterns(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        texts(ctx, &self.hints().midi_port_patterns)
    }
    #[graphql(complexity = "list_cost(MAX_TAGS, child_complexity)")]
    async fn usb_ids(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        texts(ctx, &self.hints().usb_ids)
    }
    #[graphql(complexity = "list_cost(MAX_TAGS, child_complexity)")]
    async fn audio_device_names(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        texts(ctx, &self.hints().audio_device_names)
    }
    async fn updated_at(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        rfc3339(ctx, &self.0.updated_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape_of(query: &str, limits: &GraphLimits) -> Result<Shape, Status> {
        let doc = async_graphql::parser::parse_query(query).expect("parses");
        shape(&doc, limits)
    }

    #[test]
    fn fragments_are_measured_expanded_without_expanding_them() {
        // 16 fragments, each spreading the next 30 times: 30^15 fields once expanded.
        let mut query = String::from("{ ...F0 }\n");
        for level in 0..15 {
            let spreads = (0..30).map(|_| format!("...F{}", level + 1)).collect::<Vec<_>>();
            query.push_str(&format!("fragment F{level} on Query {{ {} }}\n", spreads.join(" ")));
        }
        query.push_str("fragment F15 on Query { tags }\n");
        let started = Instant::now();
        let refused = shape_of(&query, &GraphLimits::default()).expect_err("refused");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(refused.message.contains("--graph-max-cost"), "{}", refused.message);
    }

    #[test]
    fn aliases_count_once_per_spread() {
        let limits = GraphLimits {
            max_aliases: 5,
            ..GraphLimits::default()
        };
        let ok = shape_of("{ a: tags b: tags }", &limits).expect("two aliases");
        assert_eq!((ok.fields, ok.aliases, ok.depth), (2, 2, 1));
        let refused =
            shape_of("{ ...F ...F ...F } fragment F on Query { a: tags b: tags }", &limits).expect_err("six aliases");
        assert!(refused.message.contains("6 aliases"), "{}", refused.message);
    }

    #[test]
    fn depth_and_cycles() {
        let limits = GraphLimits {
            max_depth: 3,
            ..GraphLimits::default()
        };
        assert!(shape_of("{ artifact(id: \"x\") { parents { id } } }", &limits).is_ok());
        let deep = shape_of("{ artifact(id: \"x\") { parents { parents { id } } } }", &limits);
        assert!(deep.expect_err("too deep").message.contains("--graph-max-depth"));
        let cycle = shape_of("{ ...A } fragment A on Query { ...A }", &limits);
        assert!(cycle.expect_err("cycle").message.contains("spreads itself"));
    }

    #[test]
    fn list_prices_saturate() {
        assert_eq!(list_cost(64, 0), 65);
        assert_eq!(list_cost(64, 2), 129);
        assert_eq!(list_cost(usize::MAX, usize::MAX), PRICE_CEILING);
    }
}
