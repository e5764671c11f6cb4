//! An aws-sdk-s3 HTTP client that sends every request over the tunnel (feature `aws-sdk`):
//!
//! ```ignore
//! let http = tunnel::aws::TunnelHttpClient::new(Arc::new(tunnel_client));
//! let config = aws_sdk_s3::Config::builder().http_client(http).endpoint_url("http://relay")…
//! ```
//! The relay admits members by node id, so the SDK's credentials can be anything; its
//! signature is ignored.

use std::sync::Arc;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::body::SdkBody;

use crate::TunnelClient;

#[derive(Clone, Debug)]
pub struct TunnelHttpClient(Arc<TunnelClient>);

impl TunnelHttpClient {
    pub fn new(client: Arc<TunnelClient>) -> Self {
        Self(client)
    }
}

impl HttpConnector for TunnelHttpClient {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.0.clone();
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::other(Box::new(e), None))?;
            let response = client
                .send(request)
                .await
                .map_err(|e| ConnectorError::io(Box::new(e)))?;
            let response = response.map(SdkBody::from_body_1_x);
            Response::try_from(response).map_err(|e| ConnectorError::other(Box::new(e), None))
        })
    }
}

impl HttpClient for TunnelHttpClient {
    fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}
