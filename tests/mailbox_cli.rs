//! `haven-relay send` and `haven-relay inbox` between real processes, with the relay killed
//! with -9 while a message waits.

mod binary;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use binary::{BIN, TUNNEL, TwoMembers, node_id, tunnel_relay as start_relay, two_members};

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .args(TUNNEL)
        .output()
        .unwrap()
}

#[test]
fn send_and_inbox_between_processes_survive_a_killed_relay() {
    let TwoMembers {
        relay_dir,
        dirs: [alice_dir, bob_dir],
        ids: [_, bob],
        circle,
    } = two_members(3);
    let (mut relay, link) = start_relay(relay_dir.path(), Some(&circle));

    let letter = alice_dir.path().join("letter.sealed");
    std::fs::write(&letter, vec![0xA5u8; 300_000]).unwrap();
    let sent = run(
        &["send", &link, "--to", &bob, letter.to_str().unwrap()],
        alice_dir.path(),
    );
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let id = String::from_utf8(sent.stdout).unwrap().trim().to_owned();
    assert_eq!(id.len(), 32, "send prints the message id");
    // Sent again with the same id (a retry): accepted, and still delivered once.
    let again = run(
        &["send", &link, "--to", &bob, "--id", &id, letter.to_str().unwrap()],
        alice_dir.path(),
    );
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("duplicate"));
    // A recipient outside the circle: refused, with the status in the exit code.
    let stranger = node_id(tempfile::tempdir().unwrap().path());
    let refused = run(
        &["send", &link, "--to", &stranger, letter.to_str().unwrap()],
        alice_dir.path(),
    );
    assert_eq!(refused.status.code(), Some(10 + mailbox::PostStatus::NotAMember as i32));

    relay.kill().unwrap(); // SIGKILL while the message waits for bob
    relay.wait().unwrap();
    let (mut relay, relay_link) = start_relay(relay_dir.path(), None);
    assert_eq!(relay_link, link, "same identity and port after the restart");

    let out_dir = bob_dir.path().join("inbox");
    let got = run(&["inbox", &link, "--out", out_dir.to_str().unwrap()], bob_dir.path());
    assert!(got.status.success(), "{}", String::from_utf8_lossy(&got.stderr));
    assert!(String::from_utf8_lossy(&got.stderr).contains("1 message(s) received"));
    assert!(std::fs::read(out_dir.join(&id)).unwrap() == vec![0xA5u8; 300_000]);
    // Acknowledged once written: the next inbox is empty, on stdout too.
    let empty = run(&["inbox", &link], bob_dir.path());
    assert!(empty.status.success());
    assert!(empty.stdout.is_empty());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("0 message(s) received"));

    // stdin to stdout.
    let mut send = Command::new(BIN)
        .args(["send", &link, "--to", &bob, "--data-dir"])
        .arg(alice_dir.path())
        .args(TUNNEL)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut send.stdin.take().unwrap(), b"hello bob").unwrap();
    assert!(send.wait().unwrap().success());
    let got = run(&["inbox", &link], bob_dir.path());
    assert_eq!(got.stdout, b"hello bob");
    relay.kill().unwrap();
    relay.wait().unwrap();
}
