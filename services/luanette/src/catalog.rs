//! What an agent can discover besides tools: resources (`lua://...`), prompts that teach
//! it to write and debug scripts, and completions of hashes, job ids and tags.

use hooteproto::Status;
use hooteproto::v1::{
    self as pb, CompleteReply, GetPromptReply, ListPromptsReply, ListResourcesReply, Prompt, PromptArgument,
    PromptMessage, PromptRole, ReadResourceReply, Resource, ResourceContent, ResourceTemplate, resource_content,
};
use prost::Message as _;

use crate::service::Service;
use crate::stdlib;

/// Scripts listed per `list_resources` page.
const SCRIPTS_PER_PAGE: usize = 100;
/// Most completion values returned.
const MAX_COMPLETIONS: usize = 100;

fn text(uri: &str, mime_type: &str, text: String) -> ResourceContent {
    ResourceContent {
        uri: uri.to_string(),
        mime_type: mime_type.to_string(),
        content: Some(resource_content::Content::Text(text)),
    }
}

fn to_json(message: &str, bytes: &[u8]) -> Result<String, Status> {
    let json = hooteproto::json::bytes_to_json(message, bytes).map_err(|e| Status::internal(e.to_string()))?;
    serde_json::to_string_pretty(&json).map_err(|e| Status::internal(e.to_string()))
}

impl Service {
    pub(crate) fn list_resources(&self, cursor: &str) -> Result<ListResourcesReply, Status> {
        let mut resources = Vec::new();
        if cursor.is_empty() {
            resources.push(Resource {
                uri: "lua://stdlib".into(),
                name: "Lua API reference".into(),
                description: "Every function a Luanette script can call, generated from the sandbox itself.".into(),
                mime_type: "text/markdown".into(),
            });
            resources.push(Resource {
                uri: "lua://workers".into(),
                name: "Registered workers".into(),
                description: "Workers (e.g. Chaosgarden) that registered with this Luanette, and whether they are \
                              still connected."
                    .into(),
                mime_type: "application/json".into(),
            });
        }
        let (scripts, next_cursor) = self.scripts.page(cursor, SCRIPTS_PER_PAGE)?;
        for script in scripts {
            let description = script.description.clone().unwrap_or_default();
            resources.push(Resource {
                uri: format!("lua://scripts/{}", script.script_hash),
                name: if description.name.is_empty() {
                    format!("script {}", &script.script_hash[..12.min(script.script_hash.len())])
                } else {
                    description.name
                },
                description: description.description,
                mime_type: "text/x-lua".into(),
            });
        }
        Ok(ListResourcesReply {
            resources,
            templates: vec![
                ResourceTemplate {
                    uri_template: "lua://scripts/{hash}".into(),
                    name: "Stored script".into(),
                    description: "A stored script's source and its index entry (describe(), tags, creator).".into(),
                    mime_type: "text/x-lua".into(),
                },
                ResourceTemplate {
                    uri_template: "lua://jobs/{id}".into(),
                    name: "Job".into(),
                    description: "A job's record: state, params, result or error, logs, times.".into(),
                    mime_type: "application/json".into(),
                },
            ],
            next_cursor,
        })
    }

    pub(crate) async fn read_resource(&self, uri: &str) -> Result<ReadResourceReply, Status> {
        let contents = if uri == "lua://stdlib" {
            vec![text(uri, "text/markdown", stdlib::reference().to_string())]
        } else if uri == "lua://workers" {
            let json =
                serde_json::to_string_pretty(&self.workers.to_json()).map_err(|e| Status::internal(e.to_string()))?;
            vec![text(uri, "application/json", json)]
        } else if let Some(hash) = uri.strip_prefix("lua://scripts/") {
            let (info, source) = self.scripts.source(hash)?;
            vec![
                text(uri, "text/x-lua", source),
                text(
                    uri,
                    "application/json",
                    to_json("hooteproto.v1.ScriptInfo", &info.encode_to_vec())?,
                ),
            ]
        } else if let Some(id) = uri.strip_prefix("lua://jobs/") {
            let job = self.jobs.status(id).await?;
            vec![text(
                uri,
                "application/json",
                to_json("hooteproto.v1.JobInfo", &job.encode_to_vec())?,
            )]
        } else if uri.starts_with("lua://") {
            return Err(Status::not_found(format!(
                "no resource {uri}; luanette serves lua://stdlib, lua://workers, lua://scripts/{{hash}} and \
                 lua://jobs/{{id}}"
            )));
        } else {
            return Err(Status::invalid_argument(format!("{uri:?} is not a lua:// URI")));
        };
        Ok(ReadResourceReply { contents })
    }

    pub(crate) fn list_prompts(&self) -> ListPromptsReply {
        let argument = |name: &str, description: &str, required| PromptArgument {
            name: name.into(),
            description: description.into(),
            required,
        };
        ListPromptsReply {
            prompts: vec![
                Prompt {
                    name: "write-script".into(),
                    description: "Write a Luanette script for a musical task: the sandbox, the API and the \
                                  describe()/main(params) convention."
                        .into(),
                    arguments: vec![
                        argument("goal", "What the script should do.", true),
                        argument("params", "The parameters it should take, in words.", false),
                    ],
                },
                Prompt {
                    name: "debug-script".into(),
                    description: "Find and fix why a script or job failed.".into(),
                    arguments: vec![
                        argument(
                            "job_id",
                            "A failed job (its script, params, error and logs are included).",
                            false,
                        ),
                        argument("script_hash", "A stored script.", false),
                        argument("code", "Lua code that failed (when it is not stored).", false),
                        argument("error", "The error message seen.", false),
                    ],
                },
            ],
        }
    }

    pub(crate) async fn get_prompt(&self, request: pb::GetPromptRequest) -> Result<GetPromptReply, Status> {
        let argument = |name: &str| request.arguments.get(name).map(String::as_str).unwrap_or_default();
        let reference = stdlib::reference();
        let user = |text: String| PromptMessage {
            role: PromptRole::User as i32,
            text,
        };
        match request.name.as_str() {
            "write-script" => {
                let goal = argument("goal");
                if goal.is_empty() {
                    return Err(Status::invalid_argument("write-script needs the argument `goal`"));
                }
                let params = match argument("params") {
                    "" => String::new(),
                    params => format!("\nIt takes these parameters: {params}\n"),
                };
                Ok(GetPromptReply {
                    description: "Write a Luanette script".into(),
                    messages: vec![user(format!(
                        "Write a Lua 5.4 script for Luanette that does this: {goal}\n{params}\n\
                         Conventions:\n\
                         - Define `describe()` returning `{{name = ..., description = ..., params = <JSON Schema of \
                         the params object>}}`; job params are validated against that schema before the job starts.\n\
                         - Define `main(params)` returning a JSON-compatible value (tables with string keys or 1..n \
                         sequences, numbers, strings, booleans). Large data belongs in the CAS; return its hash.\n\
                         - Report progress from long work with `job.progress(fraction, message)`; log with `log.info`.\n\
                         - Keep the top level free of work: it runs again whenever the script is described or run.\n\
                         - Store it with `script_store` (tags help others find it), then run it with `job_execute` \
                         and wait with `job_poll`; try snippets first with `lua_eval`.\n\n\
                         Example:\n```lua\nfunction describe()\n  return {{name = \"transpose\", description = \
                         \"Transpose MIDI note numbers\", params = {{type = \"object\", required = {{\"notes\", \
                         \"semitones\"}}, properties = {{notes = {{type = \"array\", items = {{type = \"integer\"}}}}, \
                         semitones = {{type = \"integer\", minimum = -24, maximum = 24}}}}}}}}\nend\n\n\
                         function main(params)\n  local out = {{}}\n  for i, n in ipairs(params.notes) do\n    \
                         out[i] = n + params.semitones\n  end\n  return out\nend\n```\n\n{reference}"
                    ))],
                })
            }
            "debug-script" => {
                let mut context = String::new();
                let job_id = argument("job_id");
                let mut script_hash = argument("script_hash").to_string();
                if !job_id.is_empty() {
                    let job = self.jobs.status(job_id).await?;
                    if script_hash.is_empty() {
                        script_hash = job.script_hash.clone();
                    }
                    context.push_str(&format!(
                        "The job `{job_id}` record (params, state, error, logs):\n```json\n{}\n```\n\n",
                        to_json("hooteproto.v1.JobInfo", &job.encode_to_vec())?
                    ));
                }
                if !script_hash.is_empty() {
                    let (info, source) = self.scripts.source(&script_hash)?;
                    context.push_str(&format!(
                        "The script `{}`:\n```lua\n{source}\n```\n\n",
                        info.script_hash
                    ));
                }
                let code = argument("code");
                if !code.is_empty() {
                    context.push_str(&format!("The code:\n```lua\n{code}\n```\n\n"));
                }
                let error = argument("error");
                if !error.is_empty() {
                    context.push_str(&format!("The error:\n```\n{error}\n```\n\n"));
                }
                if context.is_empty() {
                    return Err(Status::invalid_argument(
                        "debug-script needs at least one of `job_id`, `script_hash`, `code` or `error`",
                    ));
                }
                Ok(GetPromptReply {
                    description: "Debug a Luanette script".into(),
                    messages: vec![user(format!(
                        "{context}Explain why this Luanette script failed and give a corrected script.\n\
                         How to read the error: `details.kind` is one of syntax, runtime (with line and traceback), \
                         conversion (the result held a function, a cycle or a non-JSON value), time_limit, \
                         memory_limit, cancelled, params (the params did not match describe().params; each failing \
                         field is named) or interrupted (Luanette stopped while the job ran; just run it again). \
                         Reproduce small pieces with `lua_eval` before storing the fix.\n\n{reference}"
                    ))],
                })
            }
            other => Err(Status::not_found(format!(
                "no prompt {other:?}; luanette has write-script and debug-script"
            ))),
        }
    }

    pub(crate) async fn complete(&self, request: &pb::CompleteRequest) -> Result<CompleteReply, Status> {
        let context = request.context.as_str();
        let partial = request.partial.as_str();
        let what = context.rsplit(['/', '.', ':']).next().unwrap_or(context);
        let (values, total) = match what {
            // A script is a name or a hash: names first (people type those).
            "script_hash" | "hash" | "script" => {
                let (mut values, named) = self.scripts.names_with_prefix(partial, MAX_COMPLETIONS)?;
                let (hashes, hashed) = self.scripts.hashes_with_prefix(partial, MAX_COMPLETIONS)?;
                values.extend(hashes.into_iter().take(MAX_COMPLETIONS.saturating_sub(values.len())));
                (values, named + hashed)
            }
            "name" => self.scripts.names_with_prefix(partial, MAX_COMPLETIONS)?,
            "job_id" | "id" | "job_ids" => self.jobs.ids_with_prefix(partial, MAX_COMPLETIONS).await?,
            "tag" | "tags" => {
                let mut tags = self.scripts.tags()?;
                tags.extend(self.jobs.tags().await?);
                tags.sort();
                tags.dedup();
                let matching: Vec<String> = tags.into_iter().filter(|t| t.starts_with(partial)).collect();
                let total = matching.len();
                (matching.into_iter().take(MAX_COMPLETIONS).collect(), total)
            }
            _ => (Vec::new(), 0),
        };
        Ok(CompleteReply {
            has_more: total > values.len(),
            total: u32::try_from(total).unwrap_or(u32::MAX),
            values,
        })
    }
}
