//! Switchyard: an OpenAI-compatible LLM gateway.

pub mod config;
pub mod providers;
pub mod store;
