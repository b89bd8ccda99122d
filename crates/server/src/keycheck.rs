//! The API/admin key check as a tower layer on every REST route, and the
//! answer to a refused request.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::{self, Denied};
use crate::rest::{drain, json_response};
use crate::state::ServerState;

/// The key check as a layer on every route: a refusal is answered at once,
/// and an allowed request goes straight on to the route's own future (no
/// boxed middleware future, no extra task state), so keys cost the check.
#[derive(Clone)]
pub(crate) struct KeyCheckLayer(pub(crate) Arc<ServerState>);

impl<S> tower_layer::Layer<S> for KeyCheckLayer {
    type Service = KeyCheck<S>;
    fn layer(&self, inner: S) -> KeyCheck<S> {
        KeyCheck {
            inner,
            state: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct KeyCheck<S> {
    inner: S,
    state: Arc<ServerState>,
}

impl<S> tower_service::Service<axum::extract::Request> for KeyCheck<S>
where
    S: tower_service::Service<
            axum::extract::Request,
            Response = Response,
            Error = std::convert::Infallible,
        >,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::Either<
        std::future::Ready<Result<Response, std::convert::Infallible>>,
        S::Future,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::extract::Request) -> Self::Future {
        use futures_util::future::Either;
        let need = auth::http_access(req.uri().path());
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        match self.state.keys.check(need, given) {
            Ok(()) => Either::Right(self.inner.call(req)),
            Err(d) => Either::Left(std::future::ready(Ok(refuse(&self.state, d, req)))),
        }
    }
}

/// The answer to a request without the key its route needs, before its
/// body is read.
fn refuse(s: &Arc<ServerState>, d: Denied, req: axum::extract::Request) -> Response {
    let code = match d {
        Denied::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Denied::Forbidden => StatusCode::FORBIDDEN,
        Denied::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
    };
    let mut r = (code, json_response(&json!({"error": d.message()}))).into_response();
    // A refused upload is read off in the background, as in `read_body`, so
    // the client reads this answer, not a reset.
    let (parts, body) = req.into_parts();
    drain(s, &parts.headers, body);
    match d {
        Denied::Unauthenticated(_) => {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        Denied::RateLimited(secs) => {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        Denied::Forbidden => {}
    }
    r
}
