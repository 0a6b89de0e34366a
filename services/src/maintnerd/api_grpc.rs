//! `apipb.MaintnerService` over gRPC: Go's method paths and messages, each
//! answered by [`super::api`] from the served corpus under its read lock,
//! on a blocking thread. Before the first fold it answers `UNAVAILABLE`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use almanac_projections::corpus::Corpus;
use almanac_proto::pb::apipb::maintner_service_server::MaintnerService;
use almanac_proto::pb::apipb::{
    DashboardRequest, DashboardResponse, GetRefRequest, GetRefResponse, GoFindTryWorkRequest,
    GoFindTryWorkResponse, HasAncestorRequest, HasAncestorResponse, ListGoReleasesRequest,
    ListGoReleasesResponse,
};

use super::Shared;
use super::api::{self, ApiError};

/// The service.
#[derive(Debug, Clone)]
pub(crate) struct ApiGrpc {
    pub(crate) shared: Arc<Shared>,
    /// The last `GoFindTryWork` answer and the corpus position it was
    /// computed at: the coordinator asks every second, and the answer only
    /// changes when the corpus does (Go caches for 15 s instead).
    pub(crate) try_work: Arc<std::sync::Mutex<Option<(u64, GoFindTryWorkResponse)>>>,
}

fn status(e: ApiError) -> Status {
    match e {
        ApiError::InvalidArgument(m) => Status::invalid_argument(m),
        ApiError::NotFound(m) => Status::not_found(m),
        ApiError::Unknown(m) => Status::unknown(m),
    }
}

impl ApiGrpc {
    async fn with_corpus<T, F>(&self, f: F) -> Result<Response<T>, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Corpus) -> Result<T, ApiError> + Send + 'static,
    {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let guard = shared.corpus.read().unwrap_or_else(|p| p.into_inner());
            match guard.as_ref() {
                None => Err(Status::unavailable(
                    "the corpus is still loading; try again shortly",
                )),
                Some(corpus) => f(corpus).map(Response::new).map_err(status),
            }
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
    }
}

#[tonic::async_trait]
impl MaintnerService for ApiGrpc {
    async fn has_ancestor(
        &self,
        request: Request<HasAncestorRequest>,
    ) -> Result<Response<HasAncestorResponse>, Status> {
        let req = request.into_inner();
        self.with_corpus(move |c| api::has_ancestor(c, &req)).await
    }

    async fn get_ref(
        &self,
        request: Request<GetRefRequest>,
    ) -> Result<Response<GetRefResponse>, Status> {
        let req = request.into_inner();
        self.with_corpus(move |c| api::get_ref(c, &req)).await
    }

    async fn go_find_try_work(
        &self,
        request: Request<GoFindTryWorkRequest>,
    ) -> Result<Response<GoFindTryWorkResponse>, Status> {
        let req = request.into_inner();
        let cache = self.try_work.clone();
        self.with_corpus(move |c| {
            let at = c.position().0;
            let mut cached = cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((pos, resp)) = cached.as_ref()
                && *pos == at
            {
                return Ok(resp.clone());
            }
            let resp = api::go_find_try_work(c, &req)?;
            *cached = Some((at, resp.clone()));
            Ok(resp)
        })
        .await
    }

    async fn list_go_releases(
        &self,
        _request: Request<ListGoReleasesRequest>,
    ) -> Result<Response<ListGoReleasesResponse>, Status> {
        self.with_corpus(api::list_go_releases).await
    }

    async fn get_dashboard(
        &self,
        request: Request<DashboardRequest>,
    ) -> Result<Response<DashboardResponse>, Status> {
        let req = request.into_inner();
        self.with_corpus(move |c| api::get_dashboard(c, &req)).await
    }
}
