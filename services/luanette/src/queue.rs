//! The job requests' one door to either store: the embedded queue (sled, jobs run in this
//! process) or cluster mode's (PostgreSQL, jobs run by workers on any host).

use std::sync::Arc;
use std::time::Duration;

use hooteproto::Status;
use hooteproto::v1::{self as pb, JobInfo, JobState, PollMode};

use crate::cluster::ClusterJobs;
use crate::jobs::{Jobs, NewJob};

/// Where jobs are kept and run.
#[derive(Clone)]
pub enum Queue {
    Embedded(Arc<Jobs>),
    Cluster(Arc<ClusterJobs>),
}

impl Queue {
    pub async fn start(&self, job: NewJob, code: String, traceparent: String, owner: &[u8]) -> Result<JobInfo, Status> {
        match self {
            Self::Embedded(jobs) => jobs.start(job, code, traceparent, owner).await,
            Self::Cluster(jobs) => jobs.start(job, code, traceparent, owner).await,
        }
    }

    pub async fn status(&self, job_id: &str) -> Result<JobInfo, Status> {
        match self {
            Self::Embedded(jobs) => jobs.status(job_id),
            Self::Cluster(jobs) => jobs.status(job_id).await,
        }
    }

    pub async fn poll(
        &self,
        job_ids: &[String],
        timeout: Duration,
        mode: PollMode,
    ) -> Result<pb::JobPollReply, Status> {
        match self {
            Self::Embedded(jobs) => jobs.poll(job_ids, timeout, mode).await,
            Self::Cluster(jobs) => jobs.poll(job_ids, timeout, mode).await,
        }
    }

    pub async fn cancel(&self, job_id: &str) -> Result<pb::JobCancelReply, Status> {
        match self {
            Self::Embedded(jobs) => jobs.cancel(job_id).await,
            Self::Cluster(jobs) => jobs.cancel(job_id).await,
        }
    }

    pub async fn list(
        &self,
        status: JobState,
        page_size: usize,
        page_token: &str,
        include_params: bool,
    ) -> Result<pb::JobListReply, Status> {
        match self {
            Self::Embedded(jobs) => jobs.list(status, page_size, page_token, include_params),
            Self::Cluster(jobs) => jobs.list(status, page_size, page_token, include_params).await,
        }
    }

    pub async fn stats(&self) -> Result<pb::JobStatsReply, Status> {
        match self {
            Self::Embedded(jobs) => jobs.stats(),
            Self::Cluster(jobs) => jobs.stats().await,
        }
    }

    pub async fn ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<(Vec<String>, usize), Status> {
        match self {
            Self::Embedded(jobs) => jobs.ids_with_prefix(prefix, limit),
            Self::Cluster(jobs) => jobs.ids_with_prefix(prefix, limit).await,
        }
    }

    /// Tags used by jobs (for completion; in cluster mode, by the newest 1,000).
    pub async fn tags(&self) -> Result<Vec<String>, Status> {
        match self {
            Self::Embedded(jobs) => jobs.tags(),
            Self::Cluster(jobs) => {
                let mut tags = std::collections::BTreeSet::new();
                for job in jobs.list(JobState::Unspecified, 500, "", false).await?.jobs {
                    tags.extend(job.tags);
                }
                Ok(tags.into_iter().collect())
            }
        }
    }

    pub fn spawn_garbage_collector(&self) {
        match self {
            Self::Embedded(jobs) => jobs.spawn_garbage_collector(),
            Self::Cluster(jobs) => jobs.spawn_garbage_collector(),
        }
    }

    pub async fn shutdown(&self, grace: Duration) {
        match self {
            Self::Embedded(jobs) => jobs.shutdown(grace).await,
            Self::Cluster(jobs) => jobs.shutdown().await,
        }
    }
}
