//! Compiles `proto/tactful/v1/*.proto` with protox (pure Rust, so a fresh machine needs no
//! system `protoc`), generates the tonic services and prost messages, and writes the encoded
//! descriptor set that server reflection serves.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

const PROTO_ROOT: &str = "proto";
const PROTOS: &[&str] = &[
    "proto/tactful/v1/common.proto",
    "proto/tactful/v1/ranker.proto",
    "proto/tactful/v1/events.proto",
    "proto/tactful/v1/profile.proto",
    "proto/tactful/v1/catalog.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);

    let descriptors = protox::compile(PROTOS, [PROTO_ROOT])?;
    fs::write(
        out_dir.join("tactful_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        // A larger receive buffer than tonic's (src/pb/codec.rs).
        .codec_path("crate::pb::codec::ProstCodec")
        // Written by hand so that their embeddings decode in bulk (src/pb/bulk.rs), and events
        // from plain slices (src/pb/event.rs).
        .extern_path(".tactful.v1.Candidate", "crate::pb::bulk::Candidate")
        .extern_path(".tactful.v1.CatalogItem", "crate::pb::bulk::CatalogItem")
        .extern_path(".tactful.v1.RankRequest", "crate::pb::bulk::RankRequest")
        .extern_path(".tactful.v1.Event", "crate::pb::event::Event")
        .compile_fds(descriptors)?;
    Ok(())
}
