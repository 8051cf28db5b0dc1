// `sqlx::migrate!` embeds ./migrations at compile time; without this a new
// migration file would not rebuild the crate (sqlx's documented build script).
// The read endpoint's protos (src/grpc/proto) are compiled by protox, a
// protobuf compiler in Rust, so a machine with only cargo builds them.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=src/grpc/proto");
    let files = [
        "src/grpc/proto/streams.proto",
        "src/grpc/proto/serverfeatures.proto",
        "src/grpc/proto/gossip.proto",
        "src/grpc/proto/wire.proto",
    ];
    let fds = protox::compile(files, ["src/grpc/proto"]).expect("compiling the gRPC protos");
    tonic_build::configure()
        .build_client(false)
        .build_server(true)
        // event bodies are shared, not copied, between subscribers
        .bytes(["."])
        // three entries an event: no hashing
        .btree_map(["."])
        // events go out encoded once (wire.proto)
        .extern_path(
            ".event_store.client.streams.ReadResp.ReadEvent",
            "crate::grpc::wire::EncodedEvent",
        )
        .compile_fds(fds)
        .expect("generating the gRPC code");
}
