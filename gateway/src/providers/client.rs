//! The I/O half of providers: one pooled HTTP client, dispatch by dialect.

use std::time::Duration;

use serde_json::Value;

use super::{ChatRequest, ChatResponse, ChunkStream, ProviderError};
use crate::config::Deployment;

/// Shared upstream client (connection pool). Cheap to clone.
#[derive(Clone, Debug)]
pub struct ProviderClient {
    http: reqwest::Client,
}

impl ProviderClient {
    pub fn new() -> Self {
        ProviderClient {
            http: reqwest::Client::new(),
        }
    }

    /// Non-streaming chat completion. `timeout` bounds the whole call.
    pub async fn chat(
        &self,
        _d: &Deployment,
        _req: &ChatRequest,
        _timeout: Duration,
    ) -> Result<ChatResponse, ProviderError> {
        let _ = &self.http;
        unimplemented!("providers helper fills this in")
    }

    /// Streaming chat completion. Resolves once the upstream answered with a success status
    /// (errors before the stream are returned here, classified); `timeout` bounds the wait for
    /// the response head and for each subsequent chunk.
    pub async fn chat_stream(
        &self,
        _d: &Deployment,
        _req: &ChatRequest,
        _timeout: Duration,
    ) -> Result<ChunkStream, ProviderError> {
        unimplemented!("providers helper fills this in")
    }

    /// Embeddings (OpenAI and Azure only). Returns the OpenAI-shaped body and prompt tokens.
    pub async fn embeddings(
        &self,
        _d: &Deployment,
        _body: &serde_json::Map<String, Value>,
        _timeout: Duration,
    ) -> Result<(Value, u64), ProviderError> {
        unimplemented!("providers helper fills this in")
    }
}

impl Default for ProviderClient {
    fn default() -> Self {
        Self::new()
    }
}
