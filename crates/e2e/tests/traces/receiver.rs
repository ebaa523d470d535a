//! A minimal OTLP receiver, over HTTP (`POST /v1/traces` with a protobuf
//! `ExportTraceServiceRequest`) or gRPC (`TraceService/Export`, served by tonic with the generated
//! `opentelemetry-proto` service), keeping the spans whole so that the test reads them as a
//! collector would have received them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

/// One span as received, with the `service.name` of the resource that sent it.
#[derive(Debug, Clone)]
pub struct Received {
    pub service: String,
    pub span: Span,
}

#[derive(Debug, Default)]
struct Inbox {
    /// Every request, decodable or not: the "nothing exported" case counts these.
    requests: usize,
    spans: Vec<Received>,
}

#[derive(Debug, Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    inbox: Arc<Mutex<Inbox>>,
    _stop: Arc<tokio_util::sync::DropGuard>,
}

impl Receiver {
    /// Serves OTLP/gRPC on `listener`.
    pub async fn start_grpc(listener: tokio::net::TcpListener) -> Self {
        let addr = listener.local_addr().expect("address");
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let service = TraceServiceServer::new(GrpcInbox(inbox.clone()));
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(listener),
                    stopped.cancelled_owned(),
                )
                .await
                .expect("gRPC receiver");
        });
        Self {
            addr,
            inbox,
            _stop: Arc::new(stop.drop_guard()),
        }
    }

    /// Serves OTLP/HTTP on `listener`.
    pub async fn start(listener: tokio::net::TcpListener) -> Self {
        let addr = listener.local_addr().expect("address");
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let app = Router::new()
            .route("/v1/traces", post(export))
            .with_state(inbox.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped.cancelled_owned())
                .await
                .expect("receiver");
        });
        Self {
            addr,
            inbox,
            _stop: Arc::new(stop.drop_guard()),
        }
    }

    /// The base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> usize {
        self.inbox.lock().expect("inbox").requests
    }

    pub fn spans(&self) -> Vec<Received> {
        self.inbox.lock().expect("inbox").spans.clone()
    }
}

async fn export(
    State(inbox): State<Arc<Mutex<Inbox>>>,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], Vec<u8>) {
    let decoded = ExportTraceServiceRequest::decode(body);
    let mut inbox = inbox.lock().expect("inbox");
    inbox.requests += 1;
    let content = [(header::CONTENT_TYPE, "application/x-protobuf")];
    let Ok(request) = decoded else {
        return (StatusCode::BAD_REQUEST, content, Vec::new());
    };
    inbox.receive(request);
    let response = ExportTraceServiceResponse::default().encode_to_vec();
    (StatusCode::OK, content, response)
}

/// The gRPC service over the same inbox (tonic decodes the request).
struct GrpcInbox(Arc<Mutex<Inbox>>);

#[tonic::async_trait]
impl TraceService for GrpcInbox {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut inbox = self.0.lock().expect("inbox");
        inbox.requests += 1;
        inbox.receive(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Inbox {
    /// Keeps every span of `request` with the `service.name` of its resource.
    fn receive(&mut self, request: ExportTraceServiceRequest) {
        for resource in request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(name) => Some(name.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    self.spans.push(Received {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
    }
}
