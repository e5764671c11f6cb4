//! `haven-relay pipe --to` | `haven-relay pipe --accept` between real processes, as a user
//! would run them: stdin to the far side's stdout, both ways.

mod binary;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use binary::{BIN, TUNNEL, TwoMembers, tunnel_relay, two_members};

fn pipe(dir: &Path, link: &str, extra: &[&str]) -> Child {
    Command::new(BIN)
        .args(["pipe", link, "--data-dir"])
        .arg(dir)
        .args(TUNNEL)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn pipe_to_and_pipe_accept_join_two_members() {
    let TwoMembers {
        relay_dir,
        dirs: [alice_dir, bob_dir],
        ids: [alice, bob],
        circle,
    } = two_members(4);
    let (mut relay, link) = tunnel_relay(relay_dir.path(), Some(&circle));

    // Nobody is listening yet: an immediate, clear refusal.
    let offline = pipe(alice_dir.path(), &link, &["--to", &bob])
        .wait_with_output()
        .unwrap();
    assert!(!offline.status.success());
    assert!(
        String::from_utf8_lossy(&offline.stderr).contains("not online"),
        "{}",
        String::from_utf8_lossy(&offline.stderr)
    );

    let mut accept = pipe(bob_dir.path(), &link, &["--accept"]);
    let mut bob_says = accept.stdin.take().unwrap();
    bob_says.write_all(b"hello from bob").unwrap();
    drop(bob_says);
    // Bob is reachable once he says he is waiting.
    let mut bob_err = BufReader::new(accept.stderr.take().unwrap());
    let mut line = String::new();
    bob_err.read_line(&mut line).unwrap();
    assert!(line.contains("waiting for a call"), "{line}");
    let bob_rest = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut bob_err, &mut rest);
        rest
    });
    let upload: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    let mut call = pipe(alice_dir.path(), &link, &["--to", &bob]);
    let mut alice_says = call.stdin.take().unwrap();
    let data = upload.clone();
    let writer = std::thread::spawn(move || {
        let _ = alice_says.write_all(&data);
    });
    // Nothing here may hang the test run.
    let (alice_pid, bob_pid) = (call.id(), accept.id());
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(120));
        for pid in [alice_pid, bob_pid] {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    });
    // Both outputs are read at once: a full pipe on either side would stall the other.
    let bob_done = std::thread::spawn(move || accept.wait_with_output().unwrap());
    let call_out = call.wait_with_output().unwrap();
    writer.join().unwrap();
    let accept_out = bob_done.join().unwrap();
    assert!(
        call_out.status.success(),
        "{}",
        String::from_utf8_lossy(&call_out.stderr)
    );
    let bob_stderr = bob_rest.join().unwrap();
    assert!(accept_out.status.success(), "{bob_stderr}");
    assert_eq!(call_out.stdout, b"hello from bob");
    assert!(
        accept_out.stdout == upload,
        "bob got {} of {} bytes",
        accept_out.stdout.len(),
        upload.len()
    );
    assert!(bob_stderr.contains(&alice), "bob is told who called: {bob_stderr}");
    relay.kill().unwrap();
    relay.wait().unwrap();
}
