//! Mutations as people read and write them: protobuf's canonical JSON
//! mapping and text format, driven by the schema's descriptor set.
//!
//! The log stores binary `maintpb.Mutation`s; this module converts one record
//! to and from JSON (one object per line, as `almanac log dump --json` prints
//! and `almanac log append --json` reads) and renders the text format that
//! Go's maintwatch prints. JSON input is strict: unknown field names are
//! errors, not silently dropped.

use anyhow::{Context as _, Result};
use prost::Message as _;
use prost_reflect::text_format::FormatOptions;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor};

/// Converts mutations between the wire format, JSON and text.
#[derive(Debug, Clone)]
pub struct MutationCodec {
    mutation: MessageDescriptor,
}

impl MutationCodec {
    /// Loads the schema compiled into `almanac-proto`.
    pub fn new() -> Result<MutationCodec> {
        let pool = DescriptorPool::decode(almanac_proto::FILE_DESCRIPTOR_SET)
            .context("decoding the compiled-in protobuf descriptor set")?;
        let mutation = pool
            .get_message_by_name(almanac_proto::MUTATION_MESSAGE)
            .context("the descriptor set lacks maintpb.Mutation")?;
        Ok(MutationCodec { mutation })
    }

    /// Decodes a stored record.
    pub fn decode(&self, payload: &[u8]) -> Result<DynamicMessage> {
        DynamicMessage::decode(self.mutation.clone(), payload)
            .context("record does not decode as maintpb.Mutation")
    }

    /// One line of canonical protobuf JSON.
    pub fn to_json(&self, payload: &[u8]) -> Result<String> {
        let msg = self.decode(payload)?;
        serde_json::to_string(&msg).context("rendering JSON")
    }

    /// The record in protobuf text format, one field per line, as Go's
    /// maintwatch prints mutations.
    pub fn to_text(&self, payload: &[u8]) -> Result<String> {
        let msg = self.decode(payload)?;
        Ok(msg.to_text_format_with_options(&FormatOptions::new().pretty(true)))
    }

    /// Parses one JSON object (canonical mapping; proto field names are
    /// accepted too) into an encoded mutation.
    pub fn from_json(&self, json: &str) -> Result<Vec<u8>> {
        let mut de = serde_json::Deserializer::from_str(json);
        let msg = DynamicMessage::deserialize_with_options(
            self.mutation.clone(),
            &mut de,
            &DeserializeOptions::new().deny_unknown_fields(true),
        )
        .map_err(|e| anyhow::anyhow!("not a maintpb.Mutation in JSON: {e}"))?;
        de.end()
            .map_err(|e| anyhow::anyhow!("trailing data after the JSON object: {e}"))?;
        Ok(msg.encode_to_vec())
    }
}

/// Any message of the compiled-in schema, by full name, in Go's multi-line
/// text format (as `prototext.Format` prints it, one space after `name:`).
pub fn message_text(full_name: &str, bytes: &[u8]) -> Result<String> {
    let pool = DescriptorPool::decode(almanac_proto::FILE_DESCRIPTOR_SET)
        .context("decoding the compiled-in protobuf descriptor set")?;
    let desc = pool
        .get_message_by_name(full_name)
        .with_context(|| format!("the descriptor set lacks {full_name}"))?;
    let msg = DynamicMessage::decode(desc, bytes).with_context(|| format!("not a {full_name}"))?;
    Ok(msg.to_text_format_with_options(&FormatOptions::new().pretty(true)))
}
