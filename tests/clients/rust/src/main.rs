//! Drive a running readstates server with redis-rs (the `redis` crate's
//! sync API, default features), in RESP2 and RESP3.
//!
//! Usage: redisrs_check HOST PORT
//!
//! Every check compares a reply with the value docs/commands.md gives.
//! Exits 0 when all pass, 1 with a list of failures otherwise. Each check
//! works on its own user_ids, so the program needs a server on which those
//! read states are still unwritten (a fresh one).
//!
//! Checks:
//!   basic       RSINCR / RSRESET / RSGET / RSMGET, typed and as raw
//!               values, error replies; RESP2 and RESP3.
//!   pipeline    one pipeline written whole before any reply is read:
//!               1,000,000 RSGET, then 100,000 RSMGET of 20 channels.
//!   multi       redis::pipe().atomic() (MULTI ... EXEC) and MULTI/EXEC
//!               sent by hand: replies, values afterwards, EXECABORT on a
//!               command refused while queueing, errors at EXEC time; the
//!               connection stays in step after each error.
//!   tracking    CLIENT TRACKING on a sync RESP3 connection: the
//!               invalidation push reaches the connection's push sender,
//!               and pushes between replies do not put it out of step.
//!               (redis-rs's own client-side cache, feature cache-aio, is
//!               not tested: it caches only the commands on its built-in
//!               list, GET, HGET, MGET, ..., never a custom one like
//!               RSGET, and it needs the async API with tokio.)

use std::fmt::Debug;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use redis::{Cmd, Connection, PushKind, RedisResult, Value};

const MAX_ID: i64 = i64::MAX;
const MAX_MENTIONS: i64 = 2_147_483_647;

/// A socket timeout, so that a server that stops answering fails the
/// check that was waiting instead of hanging the program. It changes no
/// protocol option of the client.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// The version of the `redis` crate this was built with, from Cargo.lock.
fn redis_version() -> &'static str {
    let lock = include_str!("../Cargo.lock");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"redis\""
            && let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \""))
        {
            return v.trim_end_matches('"');
        }
    }
    "?"
}

struct Checks {
    n: usize,
    failures: Vec<String>,
    token: u64,
}

impl Checks {
    fn fail(&mut self, msg: String) {
        self.failures.push(msg);
    }

    /// The reply is Ok and equal to want.
    fn eq<T: PartialEq + Debug>(&mut self, what: &str, got: RedisResult<T>, want: T) {
        self.n += 1;
        match got {
            Ok(g) if g == want => {}
            Ok(g) => self.fail(format!("{what}: got {g:?}, want {want:?}")),
            Err(e) => self.fail(format!("{what}: got error {e}, want {want:?}")),
        }
    }

    /// The reply is an error with this code whose detail (the text after
    /// the code) is exactly `detail`.
    fn err_eq<T: Debug>(&mut self, what: &str, got: RedisResult<T>, code: &str, detail: &str) {
        self.err(what, got, code, detail, true)
    }

    /// The reply is an error with this code whose detail contains `part`.
    fn err_has<T: Debug>(&mut self, what: &str, got: RedisResult<T>, code: &str, part: &str) {
        self.err(what, got, code, part, false)
    }

    fn err<T: Debug>(
        &mut self,
        what: &str,
        got: RedisResult<T>,
        code: &str,
        text: &str,
        exact: bool,
    ) {
        self.n += 1;
        match got {
            Ok(g) => self.fail(format!(
                "{what}: got reply {g:?}, want error {code} {text:?}"
            )),
            Err(e) => {
                let detail = e.detail().unwrap_or("");
                let text_ok = if exact {
                    detail == text
                } else {
                    detail.contains(text)
                };
                if e.code() != Some(code) || !text_ok {
                    self.fail(format!(
                        "{what}: got error {e} (code {:?}, detail {detail:?}), want code {code} and detail {} {text:?}",
                        e.code(),
                        if exact { "equal to" } else { "containing" }
                    ));
                }
            }
        }
    }

    /// A condition that must hold.
    fn truth(&mut self, what: &str, ok: bool, detail: impl FnOnce() -> String) {
        self.n += 1;
        if !ok {
            let d = detail();
            self.fail(format!("{what}: {d}"));
        }
    }

    /// ECHO a fresh token: the next reply read is this command's own, so
    /// the connection is in step (no reply of an earlier command left over
    /// or missing).
    fn in_step(&mut self, con: &mut Connection, what: &str) {
        self.token += 1;
        let tok = format!("in-step-{}", self.token);
        let got = redis::cmd("ECHO").arg(&tok).query::<String>(con);
        self.eq(&format!("{what}: in step (ECHO)"), got, tok);
    }
}

fn client(host: &str, port: u16, resp3: bool) -> redis::Client {
    let url = if resp3 {
        format!("redis://{host}:{port}/?protocol=resp3")
    } else {
        format!("redis://{host}:{port}/")
    };
    redis::Client::open(url).expect("redis URL")
}

fn connect(host: &str, port: u16, resp3: bool) -> RedisResult<Connection> {
    let con = client(host, port, resp3).get_connection()?;
    con.set_read_timeout(Some(IO_TIMEOUT))?;
    con.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(con)
}

/// A command with integer arguments.
fn c(name: &str, args: &[i64]) -> Cmd {
    let mut cmd = redis::cmd(name);
    for a in args {
        cmd.arg(*a);
    }
    cmd
}

fn int(i: i64) -> Value {
    Value::Int(i)
}

fn rs(mention: i64, last: i64) -> Value {
    Value::Array(vec![int(mention), int(last)])
}

fn proto(resp3: bool) -> &'static str {
    if resp3 { "resp3" } else { "resp2" }
}

// ---------------------------------------------------------------- basic

fn basic(k: &mut Checks, host: &str, port: u16, resp3: bool) -> RedisResult<()> {
    let mut con = connect(host, port, resp3)?;
    let con = &mut con;
    let u: i64 = if resp3 { 7003 } else { 7002 };
    let p = format!("{}: ", proto(resp3));
    let p = p.as_str();

    let info = redis::cmd("CLIENT").arg("INFO").query::<String>(con);
    let want_resp = if resp3 { "resp=3" } else { "resp=2" };
    k.truth(
        &format!("{p}CLIENT INFO has {want_resp}"),
        info.as_ref().is_ok_and(|s| s.contains(want_resp)),
        || format!("got {info:?}"),
    );
    k.eq(
        &format!("{p}PING"),
        redis::cmd("PING").query::<String>(con),
        "PONG".to_string(),
    );

    // The example session of docs/commands.md, typed replies.
    k.eq(
        &format!("{p}RSINCR u 7"),
        c("RSINCR", &[u, 7]).query::<i64>(con),
        1,
    );
    k.eq(
        &format!("{p}RSINCR u 7 4"),
        c("RSINCR", &[u, 7, 4]).query::<i64>(con),
        5,
    );
    k.eq(
        &format!("{p}RSGET u 7"),
        c("RSGET", &[u, 7]).query::<(i64, i64)>(con),
        (5, 0),
    );
    k.eq(
        &format!("{p}RSRESET u 7 1100"),
        c("RSRESET", &[u, 7, 1100]).query::<i64>(con),
        5,
    );
    k.eq(
        &format!("{p}RSMGET u 7 8"),
        c("RSMGET", &[u, 7, 8]).query::<Vec<(i64, i64)>>(con),
        vec![(0, 1100), (0, 0)],
    );

    // The same replies as raw values: the exact shapes (arrays of integers).
    k.eq(
        &format!("{p}RSGET raw"),
        c("RSGET", &[u, 7]).query::<Value>(con),
        rs(0, 1100),
    );
    k.eq(
        &format!("{p}RSMGET raw, repeats"),
        c("rsmget", &[u, 8, 7, 8]).query::<Value>(con),
        Value::Array(vec![rs(0, 0), rs(0, 1100), rs(0, 0)]),
    );
    k.eq(
        &format!("{p}RSINCR raw"),
        c("RSINCR", &[u, 8]).query::<Value>(con),
        int(1),
    );
    k.eq(
        &format!("{p}RSRESET raw"),
        c("RSRESET", &[u, 8]).query::<Value>(con),
        int(1),
    );
    k.eq(
        &format!("{p}RSRESET without message_id keeps it"),
        c("RSGET", &[u, 7]).query::<Value>(con),
        rs(0, 1100),
    );

    // Ranges.
    let leading = redis::cmd("RSINCR")
        .arg(format!("{u:012}"))
        .arg("000000000007")
        .arg("03")
        .query::<i64>(con);
    k.eq(&format!("{p}leading zeros"), leading, 3);
    k.eq(
        &format!("{p}clamp at 0"),
        c("RSINCR", &[u, 7, -10]).query::<i64>(con),
        0,
    );
    k.eq(
        &format!("{p}max ids"),
        c("RSRESET", &[u, MAX_ID, MAX_ID]).query::<i64>(con),
        0,
    );
    k.eq(
        &format!("{p}RSGET max"),
        c("RSGET", &[u, MAX_ID]).query::<(i64, i64)>(con),
        (0, MAX_ID),
    );
    k.eq(
        &format!("{p}to the max"),
        c("RSINCR", &[u, 9, MAX_MENTIONS]).query::<i64>(con),
        MAX_MENTIONS,
    );
    k.err_has(
        &format!("{p}overflow"),
        c("RSINCR", &[u, 9]).query::<i64>(con),
        "ERR",
        "overflow",
    );
    k.eq(
        &format!("{p}unchanged after overflow"),
        c("RSGET", &[u, 9]).query::<(i64, i64)>(con),
        (MAX_MENTIONS, 0),
    );

    // Error replies: a RedisError with the server's code and text; the
    // connection goes on.
    k.err_eq(
        &format!("{p}bad channel_id"),
        redis::cmd("RSINCR").arg(u).arg("abc").query::<i64>(con),
        "ERR",
        "invalid channel_id 'abc': expected an integer from 0 to 9223372036854775807",
    );
    k.in_step(con, &format!("{p}bad channel_id"));
    k.err_has(
        &format!("{p}bad user_id"),
        redis::cmd("RSGET").arg("0x1").arg(1).query::<Value>(con),
        "ERR",
        "invalid user_id '0x1'",
    );
    k.err_has(
        &format!("{p}above max"),
        redis::cmd("RSGET")
            .arg(u)
            .arg("9223372036854775808")
            .query::<Value>(con),
        "ERR",
        "invalid channel_id '9223372036854775808'",
    );
    k.err_has(
        &format!("{p}bad message_id"),
        c("RSRESET", &[u, 7, -1]).query::<i64>(con),
        "ERR",
        "invalid message_id '-1'",
    );
    k.err_has(
        &format!("{p}bad delta"),
        redis::cmd("RSINCR")
            .arg(u)
            .arg(7)
            .arg("x")
            .query::<i64>(con),
        "ERR",
        "delta",
    );
    k.err_eq(
        &format!("{p}arity"),
        c("RSGET", &[u]).query::<Value>(con),
        "ERR",
        "wrong number of arguments for 'rsget' command",
    );
    k.err_eq(
        &format!("{p}arity rsincr"),
        c("RSINCR", &[u, 1, 2, 3]).query::<Value>(con),
        "ERR",
        "wrong number of arguments for 'rsincr' command",
    );
    k.err_has(
        &format!("{p}unknown"),
        redis::cmd("FOO").arg("a").arg("b").query::<Value>(con),
        "ERR",
        "unknown command 'FOO', with args beginning with: 'a' 'b' ",
    );
    k.in_step(con, &format!("{p}errors"));
    k.eq(
        &format!("{p}after errors"),
        c("RSGET", &[u, 7]).query::<(i64, i64)>(con),
        (0, 1100),
    );

    // A small pipeline (not atomic) with errors in place.
    let mut pipe = redis::pipe();
    let mut want: Vec<Result<i64, ()>> = Vec::new();
    let mut counts = [0i64; 10];
    for i in 0..200 {
        let ch = (i % 10) as i64;
        pipe.add_command(c("RSINCR", &[u, 100 + ch, 2]));
        counts[ch as usize] += 2;
        want.push(Ok(counts[ch as usize]));
        if i % 50 == 0 {
            pipe.add_command(redis::cmd("RSGET").arg(u).arg("bad").clone());
            want.push(Err(()));
        }
    }
    let got = pipe
        .clone()
        .ignore_errors()
        .query::<Vec<RedisResult<i64>>>(con);
    let got: RedisResult<Vec<Result<i64, ()>>> =
        got.map(|v| v.into_iter().map(|r| r.map_err(|_| ())).collect());
    k.eq(
        &format!("{p}pipeline with errors, ignore_errors"),
        got,
        want,
    );
    // Without ignore_errors the query fails as a whole, naming the errors
    // by their index; every command still ran.
    let got = pipe.query::<Vec<Value>>(con);
    k.truth(&format!("{p}pipeline with errors fails"), matches!(&got, Err(e) if e.to_string().contains("Index 1,") && e.to_string().contains("invalid channel_id 'bad'")), || {
        format!("got {got:?}, want a pipeline error at index 1 naming invalid channel_id 'bad'")
    });
    k.in_step(con, &format!("{p}pipeline with errors"));
    let all: Vec<i64> = (100..110).collect();
    let mut args = vec![u];
    args.extend(&all);
    k.eq(
        &format!("{p}RSMGET after pipelines"),
        c("RSMGET", &args).query::<Vec<(i64, i64)>>(con),
        vec![(80, 0); 10],
    );
    Ok(())
}

// ------------------------------------------------------------- pipeline

/// The read state set up for (user index ui, channel index ci).
fn big_want(ui: i64, ci: i64) -> (i64, i64) {
    (ui * 100 + ci + 1, 1_000_000 + ui * 1000 + ci)
}

fn big_pipelines(k: &mut Checks, host: &str, port: u16) -> RedisResult<()> {
    let mut con = connect(host, port, false)?;
    let con = &mut con;
    let base: i64 = 7100;
    const USERS: i64 = 4;
    const CHANNELS: i64 = 20;
    // Set the values first: RSRESET sets last_message_id, RSINCR the count.
    let mut setup = redis::pipe();
    for ui in 0..USERS {
        for ci in 0..CHANNELS {
            let (m, last) = big_want(ui, ci);
            setup.add_command(c("RSRESET", &[base + ui, ci + 1, last]));
            setup.add_command(c("RSINCR", &[base + ui, ci + 1, m]));
        }
    }
    let got = setup.query::<Vec<i64>>(con);
    let want: Vec<i64> = (0..USERS * CHANNELS)
        .flat_map(|i| [0, big_want(i / CHANNELS, i % CHANNELS).0])
        .collect();
    k.eq("pipeline setup", got, want);

    // 1,000,000 RSGET in one pipeline: redis-rs writes all of it (about
    // 35 MB) before it reads the first reply, so the server must keep
    // reading while its replies wait to be read.
    const N: usize = 1_000_000;
    let mut pipe = redis::pipe();
    for i in 0..N as i64 {
        let ui = i % USERS;
        let ci = (i / USERS) % CHANNELS;
        pipe.add_command(c("RSGET", &[base + ui, ci + 1]));
    }
    let t = Instant::now();
    let got = pipe.query::<Vec<(i64, i64)>>(con);
    let took = t.elapsed();
    drop(pipe);
    match got {
        Err(e) => {
            k.n += 1;
            k.fail(format!("pipeline of {N} RSGET: error {e} after {took:?}"));
        }
        Ok(v) => {
            k.truth(
                &format!("pipeline of {N} RSGET: reply count"),
                v.len() == N,
                || format!("got {} replies", v.len()),
            );
            let mut bad = Vec::new();
            let mut nbad = 0;
            for (i, g) in v.iter().enumerate() {
                let i = i as i64;
                let w = big_want(i % USERS, (i / USERS) % CHANNELS);
                if *g != w {
                    nbad += 1;
                    if bad.len() < 5 {
                        bad.push(format!("#{i}: got {g:?}, want {w:?}"));
                    }
                }
            }
            k.truth(
                &format!("pipeline of {N} RSGET: every reply in order"),
                nbad == 0,
                || format!("{nbad} wrong, first: {}", bad.join("; ")),
            );
            println!("pipeline of {N} RSGET: {:.2}s", took.as_secs_f64());
        }
    }
    k.in_step(con, "after the RSGET pipeline");

    // 100,000 RSMGET of 20 channels each.
    const M: usize = 100_000;
    let mut pipe = redis::pipe();
    let mut args = Vec::with_capacity(1 + CHANNELS as usize);
    for i in 0..M as i64 {
        args.clear();
        args.push(base + i % USERS);
        // A rotation of the 20 channels, so that order matters.
        for j in 0..CHANNELS {
            args.push((i + j) % CHANNELS + 1);
        }
        pipe.add_command(c("RSMGET", &args));
    }
    let t = Instant::now();
    let got = pipe.query::<Vec<Vec<(i64, i64)>>>(con);
    let took = t.elapsed();
    drop(pipe);
    match got {
        Err(e) => {
            k.n += 1;
            k.fail(format!("pipeline of {M} RSMGET: error {e} after {took:?}"));
        }
        Ok(v) => {
            k.truth(
                &format!("pipeline of {M} RSMGET: reply count"),
                v.len() == M,
                || format!("got {} replies", v.len()),
            );
            let mut bad = Vec::new();
            let mut nbad = 0;
            for (i, g) in v.iter().enumerate() {
                let i = i as i64;
                let w: Vec<(i64, i64)> = (0..CHANNELS)
                    .map(|j| big_want(i % USERS, (i + j) % CHANNELS))
                    .collect();
                if *g != w {
                    nbad += 1;
                    if bad.len() < 3 {
                        bad.push(format!("#{i}: got {g:?}, want {w:?}"));
                    }
                }
            }
            k.truth(
                &format!("pipeline of {M} RSMGET: every reply in order"),
                nbad == 0,
                || format!("{nbad} wrong, first: {}", bad.join("; ")),
            );
            println!(
                "pipeline of {M} RSMGET x {CHANNELS}: {:.2}s",
                took.as_secs_f64()
            );
        }
    }
    k.in_step(con, "after the RSMGET pipeline");
    Ok(())
}

// ---------------------------------------------------------------- multi

fn multi(k: &mut Checks, host: &str, port: u16, resp3: bool) -> RedisResult<()> {
    let mut con = connect(host, port, resp3)?;
    let con = &mut con;
    let u: i64 = if resp3 { 7203 } else { 7202 };
    let p = format!("{} multi: ", proto(resp3));
    let p = p.as_str();

    // pipe().atomic(): MULTI, the commands, EXEC; the replies are EXEC's.
    let got = redis::pipe()
        .atomic()
        .add_command(c("RSINCR", &[u, 1, 3]))
        .add_command(c("RSINCR", &[u, 1]))
        .add_command(c("RSGET", &[u, 1]))
        .add_command(c("RSRESET", &[u, 2, 55]))
        .add_command(c("RSMGET", &[u, 1, 2, 3]))
        .add_command(redis::cmd("PING").clone())
        .query::<Value>(con);
    k.eq(
        &format!("{p}atomic replies"),
        got,
        Value::Array(vec![
            int(4 - 1),
            int(4),
            rs(4, 0),
            int(0),
            Value::Array(vec![rs(4, 0), rs(0, 55), rs(0, 0)]),
            Value::SimpleString("PONG".into()),
        ]),
    );
    let got = redis::pipe()
        .atomic()
        .add_command(c("RSINCR", &[u, 2, 7]))
        .add_command(c("RSGET", &[u, 2]))
        .query::<(i64, (i64, i64))>(con);
    k.eq(&format!("{p}atomic typed"), got, (7, (7, 55)));
    k.eq(
        &format!("{p}values after"),
        c("RSMGET", &[u, 1, 2]).query::<Vec<(i64, i64)>>(con),
        vec![(4, 0), (7, 55)],
    );

    // A command refused while queueing (wrong arity): EXEC discards the
    // whole transaction with EXECABORT; redis-rs reports the queueing
    // error by its index in the pipeline.
    let got = redis::pipe()
        .atomic()
        .add_command(c("RSINCR", &[u, 3]))
        .add_command(c("RSGET", &[u]))
        .add_command(c("RSINCR", &[u, 3]))
        .query::<Value>(con);
    k.truth(
        &format!("{p}wrong arity aborts"),
        matches!(&got, Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ExecAbort)
            && e.to_string().contains("(Index 1, error: ResponseError: wrong number of arguments for 'rsget' command)")),
        || format!("got {got:?}, want an EXECABORT error naming index 1, wrong number of arguments for 'rsget' command"),
    );
    k.in_step(con, &format!("{p}wrong arity"));
    k.eq(
        &format!("{p}nothing ran"),
        c("RSGET", &[u, 3]).query::<(i64, i64)>(con),
        (0, 0),
    );

    // Unknown commands (WATCH is one here) and commands not allowed in a
    // transaction abort it too.
    let got = redis::pipe()
        .atomic()
        .add_command(c("RSINCR", &[u, 3]))
        .add_command(redis::cmd("WATCH").arg(u).clone())
        .query::<Value>(con);
    k.truth(
        &format!("{p}unknown command aborts"),
        matches!(&got, Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ExecAbort)
            && e.to_string().contains("unknown command 'WATCH'")),
        || format!("got {got:?}, want an EXECABORT error naming unknown command 'WATCH'"),
    );
    k.in_step(con, &format!("{p}unknown command"));
    let got = redis::pipe()
        .atomic()
        .add_command(c("RSINCR", &[u, 3]))
        .add_command(redis::cmd("DBSIZE").clone())
        .query::<Value>(con);
    k.truth(
        &format!("{p}command not allowed aborts"),
        matches!(&got, Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ExecAbort)
            && e.to_string().contains("Command not allowed inside a transaction")),
        || format!("got {got:?}, want an EXECABORT error naming Command not allowed inside a transaction"),
    );
    k.in_step(con, &format!("{p}command not allowed"));
    k.eq(
        &format!("{p}still nothing ran"),
        c("RSGET", &[u, 3]).query::<(i64, i64)>(con),
        (0, 0),
    );

    // The next transaction on the same connection works.
    let got = redis::pipe()
        .atomic()
        .add_command(c("RSINCR", &[u, 3, 2]))
        .add_command(c("RSGET", &[u, 3]))
        .query::<(i64, (i64, i64))>(con);
    k.eq(&format!("{p}transaction after aborts"), got, (2, (2, 0)));

    // An error when EXEC runs a command is that command's reply; the
    // others run. redis-rs: with ignore_errors, one result per command.
    let got = redis::pipe()
        .atomic()
        .ignore_errors()
        .add_command(c("RSINCR", &[u, 4]))
        .add_command(redis::cmd("RSGET").arg(u).arg("abc").clone())
        .add_command(c("RSINCR", &[u, 4, MAX_MENTIONS]))
        .add_command(c("RSINCR", &[u, 4]))
        .query::<Vec<RedisResult<i64>>>(con);
    match got {
        Err(e) => {
            k.n += 1;
            k.fail(format!("{p}errors at EXEC, ignore_errors: got error {e}"));
        }
        Ok(v) => {
            let shape: Vec<String> = v
                .iter()
                .map(|r| match r {
                    Ok(i) => i.to_string(),
                    Err(e) => format!("{}: {}", e.code().unwrap_or("?"), e.detail().unwrap_or("")),
                })
                .collect();
            let ok = shape.len() == 4
                && shape[0] == "1"
                && shape[1]
                    == "ERR: invalid channel_id 'abc': expected an integer from 0 to 9223372036854775807"
                && shape[2].starts_with("ERR: ")
                && shape[2].contains("overflow")
                && shape[3] == "2";
            k.truth(&format!("{p}errors at EXEC, ignore_errors"), ok, || {
                format!("got {shape:?}, want [1, ERR: invalid channel_id 'abc': ..., ERR: ...overflow..., 2]")
            });
        }
    }
    k.eq(
        &format!("{p}values after errors at EXEC"),
        c("RSGET", &[u, 4]).query::<(i64, i64)>(con),
        (2, 0),
    );
    // Without ignore_errors: the query fails, naming the failed command.
    let got = redis::pipe()
        .atomic()
        .add_command(c("RSINCR", &[u, 5]))
        .add_command(redis::cmd("RSGET").arg(u).arg("abc").clone())
        .query::<Value>(con);
    k.truth(
        &format!("{p}error at EXEC fails the query"),
        matches!(&got, Err(e) if e.to_string().contains("Index 1,") && e.to_string().contains("invalid channel_id 'abc'")),
        || format!("got {got:?}, want an error at index 1 naming invalid channel_id 'abc'"),
    );
    k.in_step(con, &format!("{p}error at EXEC"));
    k.eq(
        &format!("{p}the other command ran"),
        c("RSGET", &[u, 5]).query::<(i64, i64)>(con),
        (1, 0),
    );

    // MULTI/EXEC sent one command at a time: the replies Redis sends.
    k.eq(
        &format!("{p}MULTI"),
        redis::cmd("MULTI").query::<Value>(con),
        Value::Okay,
    );
    k.eq(
        &format!("{p}QUEUED"),
        c("RSINCR", &[u, 6, 5]).query::<Value>(con),
        Value::SimpleString("QUEUED".into()),
    );
    k.err_eq(
        &format!("{p}nested MULTI"),
        redis::cmd("MULTI").query::<Value>(con),
        "ERR",
        "MULTI calls can not be nested",
    );
    k.err_eq(
        &format!("{p}arity while queueing"),
        c("RSGET", &[u]).query::<Value>(con),
        "ERR",
        "wrong number of arguments for 'rsget' command",
    );
    k.err_eq(
        &format!("{p}EXEC after a queueing error"),
        redis::cmd("EXEC").query::<Value>(con),
        "EXECABORT",
        "Transaction discarded because of previous errors.",
    );
    k.in_step(con, &format!("{p}EXECABORT by hand"));
    k.eq(
        &format!("{p}discarded"),
        c("RSGET", &[u, 6]).query::<(i64, i64)>(con),
        (0, 0),
    );
    k.err_eq(
        &format!("{p}EXEC without MULTI"),
        redis::cmd("EXEC").query::<Value>(con),
        "ERR",
        "EXEC without MULTI",
    );
    k.err_eq(
        &format!("{p}DISCARD without MULTI"),
        redis::cmd("DISCARD").query::<Value>(con),
        "ERR",
        "DISCARD without MULTI",
    );
    k.eq(
        &format!("{p}MULTI again"),
        redis::cmd("MULTI").query::<Value>(con),
        Value::Okay,
    );
    k.eq(
        &format!("{p}QUEUED again"),
        c("RSINCR", &[u, 6, 5]).query::<Value>(con),
        Value::SimpleString("QUEUED".into()),
    );
    k.eq(
        &format!("{p}DISCARD"),
        redis::cmd("DISCARD").query::<Value>(con),
        Value::Okay,
    );
    k.eq(
        &format!("{p}MULTI a third time"),
        redis::cmd("MULTI").query::<Value>(con),
        Value::Okay,
    );
    k.eq(
        &format!("{p}QUEUED a third time"),
        c("RSINCR", &[u, 6, 5]).query::<Value>(con),
        Value::SimpleString("QUEUED".into()),
    );
    k.eq(
        &format!("{p}EXEC"),
        redis::cmd("EXEC").query::<Value>(con),
        Value::Array(vec![int(5)]),
    );
    k.in_step(con, &format!("{p}by hand"));

    // Another client sees the transaction's effects.
    let mut other = connect(host, port, resp3)?;
    k.eq(
        &format!("{p}seen by another connection"),
        c("RSMGET", &[u, 1, 2, 3, 4, 5, 6]).query::<Vec<(i64, i64)>>(&mut other),
        vec![(4, 0), (7, 55), (2, 0), (2, 0), (1, 0), (5, 0)],
    );
    Ok(())
}

// ------------------------------------------------------------- tracking

fn tracking(k: &mut Checks, host: &str, port: u16) -> RedisResult<()> {
    let u: i64 = 7300;
    let p = "resp3 tracking: ";
    let mut a = connect(host, port, true)?;
    let (tx, rx) = mpsc::channel();
    a.set_push_sender(tx);
    let mut b = connect(host, port, true)?;

    k.eq(
        &format!("{p}CLIENT TRACKING ON"),
        redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .query::<Value>(&mut a),
        Value::Okay,
    );
    k.eq(
        &format!("{p}RSGET"),
        c("RSGET", &[u, 1]).query::<(i64, i64)>(&mut a),
        (0, 0),
    );
    k.eq(
        &format!("{p}RSINCR from another connection"),
        c("RSINCR", &[u, 1]).query::<i64>(&mut b),
        1,
    );
    // The push is read with the next reply on a.
    k.in_step(&mut a, &format!("{p}after the invalidation"));
    let want = (
        PushKind::Invalidate,
        vec![Value::Array(vec![Value::BulkString(
            u.to_string().into_bytes(),
        )])],
    );
    let got = rx
        .recv_timeout(Duration::from_secs(5))
        .map(|pi| (pi.kind, pi.data));
    k.truth(
        &format!("{p}invalidation push"),
        got.as_ref().is_ok_and(|g| *g == want),
        || format!("got {got:?}, want {want:?}"),
    );
    k.eq(
        &format!("{p}RSGET sees the change"),
        c("RSGET", &[u, 1]).query::<(i64, i64)>(&mut a),
        (1, 0),
    );

    // The connection's own change, in a pipeline: the push comes between
    // two replies, and redis-rs must still give each command its reply.
    let got = redis::pipe()
        .add_command(c("RSINCR", &[u, 2, 3]))
        .add_command(c("RSGET", &[u, 2]))
        .add_command(c("RSINCR", &[u, 2]))
        .add_command(c("RSMGET", &[u, 1, 2]))
        .query::<(i64, (i64, i64), i64, Vec<(i64, i64)>)>(&mut a);
    k.eq(
        &format!("{p}pipeline with pushes between replies"),
        got,
        (3, (3, 0), 4, vec![(1, 0), (4, 0)]),
    );
    k.in_step(&mut a, &format!("{p}pipeline with pushes"));
    let mut pushes = 0;
    while let Ok(pi) = rx.try_recv() {
        if pi.kind == PushKind::Invalidate {
            pushes += 1;
        }
    }
    // The RSGET before the pipeline tracks u: its RSINCR is told. The
    // pipeline's RSGET tracks u again: the second RSINCR is told too.
    k.truth(&format!("{p}own changes are told"), pushes >= 2, || {
        format!("got {pushes} invalidation pushes, want at least 2")
    });

    // In a transaction too.
    let got = redis::pipe()
        .atomic()
        .add_command(c("RSGET", &[u, 3]))
        .add_command(c("RSINCR", &[u, 3]))
        .add_command(c("RSGET", &[u, 3]))
        .query::<((i64, i64), i64, (i64, i64))>(&mut a);
    k.eq(
        &format!("{p}transaction with pushes"),
        got,
        ((0, 0), 1, (1, 0)),
    );
    k.in_step(&mut a, &format!("{p}transaction with pushes"));

    k.eq(
        &format!("{p}CLIENT TRACKING OFF"),
        redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("OFF")
            .query::<Value>(&mut a),
        Value::Okay,
    );
    while rx.try_recv().is_ok() {}
    k.eq(
        &format!("{p}RSGET untracked"),
        c("RSGET", &[u, 1]).query::<(i64, i64)>(&mut a),
        (1, 0),
    );
    k.eq(
        &format!("{p}RSINCR from b, untracked"),
        c("RSINCR", &[u, 1]).query::<i64>(&mut b),
        2,
    );
    k.in_step(&mut a, &format!("{p}untracked"));
    let got = rx.try_recv().map(|pi| (pi.kind, pi.data));
    k.truth(&format!("{p}no push when off"), got.is_err(), || {
        format!("got {got:?}, want none")
    });

    // RESP2: CLIENT TRACKING ON is refused, the connection goes on.
    let mut r2 = connect(host, port, false)?;
    let got = redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .query::<Value>(&mut r2);
    k.truth(
        &format!("{p}refused in RESP2"),
        matches!(&got, Err(e) if e.code() == Some("ERR")),
        || format!("got {got:?}, want an ERR reply"),
    );
    k.in_step(&mut r2, "resp2: after CLIENT TRACKING ON");
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!(
            "usage: {} HOST PORT",
            args.first().map(String::as_str).unwrap_or("redisrs_check")
        );
        std::process::exit(2);
    }
    let host = args[1].as_str();
    let port: u16 = match args[2].parse() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bad PORT {:?}: {e}", args[2]);
            std::process::exit(2);
        }
    };
    let mut k = Checks {
        n: 0,
        failures: Vec::new(),
        token: 0,
    };
    let start = Instant::now();
    for resp3 in [false, true] {
        if let Err(e) = basic(&mut k, host, port, resp3) {
            k.fail(format!("{}: basic aborted: {e}", proto(resp3)));
        }
    }
    for resp3 in [false, true] {
        if let Err(e) = multi(&mut k, host, port, resp3) {
            k.fail(format!("{} multi: aborted: {e}", proto(resp3)));
        }
    }
    if let Err(e) = tracking(&mut k, host, port) {
        k.fail(format!("resp3 tracking: aborted: {e}"));
    }
    if let Err(e) = big_pipelines(&mut k, host, port) {
        k.fail(format!("pipelines: aborted: {e}"));
    }
    println!(
        "SKIP client-side caching (cache-aio): redis-rs caches only the commands on its built-in list (GET, HGET, MGET, ...), never a custom command like RSGET, and needs the async API with tokio"
    );
    println!(
        "redis-rs {}: {} checks in {:.1}s, {} failed",
        redis_version(),
        k.n,
        start.elapsed().as_secs_f64(),
        k.failures.len()
    );
    for f in &k.failures {
        println!("FAIL {f}");
    }
    std::process::exit(if k.failures.is_empty() { 0 } else { 1 });
}
