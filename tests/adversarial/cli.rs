//! 6. The command line as a careless user meets it.

use super::Server;

#[test]
fn a_bare_host_port_address_works_and_a_piped_log_has_no_colour() {
    let server = Server::start(&[]);
    assert!(
        !server.log_head.contains('\u{1b}'),
        "colour codes in a piped log: {:?}",
        server.log_head
    );
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/candidates.json");
    let bare = server.addr.to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tactful"))
        .args([
            "rank",
            "--addr",
            &bare,
            "--user",
            "u",
            "--candidates",
            sample,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
