//! `tactful catalog upsert FILE`: streams a JSON-lines catalog file (the format of the
//! server's start-up file, see [`crate::catalog`]) to `Catalog.Upsert`. The file is read
//! twice, never held whole (so its size is not bounded by the client's memory): first to find
//! any line that does not parse before anything is sent, then to send it. An item the server
//! refuses comes back as `items[i]`, reported as the file's line; nothing of the file is
//! applied then.
//!
//! Also the bench's `--catalog` mode: the generated items go to the catalog first, and the
//! requests then carry what belongs to the request only.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use super::client::Failure;
use super::{Access, EXIT_UNAVAILABLE, EXIT_USAGE};
use crate::catalog::{ItemFields, parse_line};
use crate::pb;

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Add, replace or delete items from a JSON-lines file (one CatalogItem per line, in
    /// protobuf's JSON form), all or nothing.
    Upsert(UpsertArgs),
}

#[derive(Debug, Args)]
pub struct UpsertArgs {
    /// Server address.
    #[arg(long, env = "TACTFUL_ADDR", default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// Give up after this many seconds: the deadline of the whole upload.
    #[arg(long, default_value_t = 600)]
    pub timeout_s: u64,
    #[command(flatten)]
    pub access: Access,
    /// The file: e.g. {"item_id": 1001, "category_id": 10, "brand_id": 3, "price": 699,
    /// "embedding": [0.1, ...], "title": "Nova X phone", "complement_categories": [13, 14]}
    /// on each line; {"item_id": 1001, "deleted": true} removes an item.
    pub file: PathBuf,
}

pub async fn run(command: CatalogCommand) -> Result<(), Failure> {
    match command {
        CatalogCommand::Upsert(args) => upsert(args).await,
    }
}

fn item(f: ItemFields) -> pb::CatalogItem {
    pb::CatalogItem {
        item_id: f.item_id,
        category_id: f.category_id,
        brand_id: f.brand_id,
        shop_id: f.shop_id,
        price: f.price,
        popularity: f.popularity,
        embedding: f.embedding,
        embedding_f32le: Vec::new(),
        title: f.title,
        complement_categories: f.complement_categories,
        deleted: f.deleted,
    }
}

/// Calls `each(line, item)` for every item of the file, in order; stops at the first line
/// that cannot be read or parsed, or when `each` returns false.
fn for_each_item(
    path: &Path,
    mut each: impl FnMut(usize, ItemFields) -> bool,
) -> Result<(), Failure> {
    let at = |line: usize, message: String| {
        Failure(
            format!("{} line {line}: {message}", path.display()),
            EXIT_USAGE,
        )
    };
    let file = std::fs::File::open(path)
        .map_err(|e| Failure(format!("cannot read {}: {e}", path.display()), EXIT_USAGE))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut text = String::new();
    let mut line = 0;
    loop {
        text.clear();
        line += 1;
        match reader.read_line(&mut text) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(at(line, format!("cannot read: {e}"))),
        }
        let json = text.trim_start_matches('\u{feff}').trim();
        if json.is_empty() {
            continue;
        }
        let fields = parse_line(json).map_err(|m| at(line, m))?;
        if !each(line, fields) {
            return Ok(());
        }
    }
}

/// A refusal naming `items[i]` with the file line of item `i` in front.
fn with_line(message: &str, path: &Path, lines: &[usize]) -> String {
    let line = message
        .strip_prefix("items[")
        .and_then(|rest| rest.split(']').next())
        .and_then(|i| i.parse::<usize>().ok())
        .and_then(|i| lines.get(i));
    match line {
        Some(line) => format!("{} line {line}: {message}", path.display()),
        None => message.to_owned(),
    }
}

async fn connect(endpoint: Endpoint, addr: &str) -> Result<Channel, Failure> {
    endpoint.connect().await.map_err(|e| {
        Failure(
            format!("cannot reach tactful at {addr}: {e} (is `tactful serve` running?)"),
            EXIT_UNAVAILABLE,
        )
    })
}

async fn upsert(args: UpsertArgs) -> Result<(), Failure> {
    let authorization = args.access.authorization()?;
    // First pass: the line of each item, and any line that does not parse.
    let path = args.file.clone();
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for_each_item(&path, |line, _| {
            lines.push(line);
            true
        })
        .map(|()| lines)
    })
    .await
    .map_err(|e| Failure(format!("reading {}: {e}", args.file.display()), 1))??;

    let channel = connect(args.access.endpoint(&args.addr)?, &args.addr).await?;
    let (tx, rx) = mpsc::channel(1024);
    let (stop_tx, stop_rx) = oneshot::channel::<(Failure, mpsc::Sender<pb::CatalogItem>)>();
    let path = args.file.clone();
    tokio::task::spawn_blocking(move || {
        let sent = for_each_item(&path, |_, fields| tx.blocking_send(item(fields)).is_ok());
        match sent {
            // Dropping the sender ends the stream: the server applies it.
            Ok(()) => drop(tx),
            // The file changed since the first pass. The stream must not end normally, or
            // the server would apply what was sent so far: keep it open for the caller.
            Err(failure) => {
                let _ = stop_tx.send((failure, tx));
            }
        }
    });
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request.set_timeout(Duration::from_secs(args.timeout_s));
    if let Some(token) = authorization {
        request.metadata_mut().insert("authorization", token);
    }
    let mut client = pb::catalog_client::CatalogClient::new(channel);
    let call = client.upsert(request);
    tokio::pin!(call);
    let answer = tokio::select! {
        answer = &mut call => answer,
        stopped = stop_rx => match stopped {
            Ok((failure, open)) => {
                // The process exits next, breaking the connection mid-stream, so the server
                // applies nothing; the open stream is never closed cleanly before that.
                std::mem::forget(open);
                return Err(failure);
            }
            // The whole file was sent and the stream closed: wait for the answer.
            Err(_) => call.await,
        },
    };
    let r = answer
        .map_err(|s| {
            Failure(
                format!(
                    "{:?}: {}",
                    s.code(),
                    with_line(s.message(), &args.file, &lines)
                ),
                1,
            )
        })?
        .into_inner();
    println!(
        "upserted {} item(s), deleted {} from {}; the catalog holds {} item(s)",
        r.upserted,
        r.deleted,
        args.file.display(),
        r.items
    );
    Ok(())
}

/// For `tactful bench --catalog`: sends every candidate of `requests` to the catalog as an
/// item (attributes and embedding; for an id that appears in several requests the last one
/// wins, as the catalog's own rule), then strips the requests to what belongs to the request:
/// id, score, evidence, sponsored, anchors.
pub async fn move_to_catalog(
    endpoint: &Endpoint,
    authorization: Option<&MetadataValue<Ascii>>,
    requests: &mut [pb::RankRequest],
) -> Result<(), Failure> {
    let addr = endpoint.uri().to_string();
    let mut items: HashMap<u64, pb::CatalogItem> = HashMap::new();
    for c in requests.iter_mut().flat_map(|r| r.candidates.iter_mut()) {
        let item = pb::CatalogItem {
            item_id: c.item_id,
            category_id: std::mem::take(&mut c.category_id),
            brand_id: std::mem::take(&mut c.brand_id),
            shop_id: std::mem::take(&mut c.shop_id),
            price: std::mem::take(&mut c.price),
            popularity: std::mem::take(&mut c.popularity),
            embedding: std::mem::take(&mut c.embedding),
            embedding_f32le: Vec::new(),
            title: std::mem::take(&mut c.title),
            complement_categories: Vec::new(),
            deleted: false,
        };
        items.insert(item.item_id, item);
    }
    let mut request = tonic::Request::new(tokio_stream::iter(items.into_values()));
    request.set_timeout(Duration::from_secs(60));
    if let Some(token) = authorization {
        request
            .metadata_mut()
            .insert("authorization", token.clone());
    }
    let channel = connect(endpoint.clone(), &addr).await?;
    pb::catalog_client::CatalogClient::new(channel)
        .upsert(request)
        .await
        .map_err(|s| {
            Failure(
                format!(
                    "--catalog: the upload to the catalog failed (the server needs \
                     catalog.dim = --dim): {:?}: {}",
                    s.code(),
                    s.message()
                ),
                1,
            )
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commands_parse() {
        use clap::Parser;
        let cli = super::super::Cli::try_parse_from([
            "tactful",
            "catalog",
            "upsert",
            "--timeout-s",
            "30",
            "items.jsonl",
        ])
        .unwrap();
        let super::super::Command::Catalog(CatalogCommand::Upsert(args)) = cli.command else {
            panic!("not catalog upsert");
        };
        assert_eq!(
            (args.timeout_s, args.file),
            (30, PathBuf::from("items.jsonl"))
        );
        let no_file = super::super::Cli::try_parse_from(["tactful", "catalog", "upsert"]);
        assert!(no_file.is_err());
        let bench = super::super::Cli::try_parse_from(["tactful", "bench", "--catalog"]).unwrap();
        let super::super::Command::Bench(args) = bench.command else {
            panic!("not bench");
        };
        assert!(args.catalog);
    }

    #[test]
    fn a_refused_item_is_named_by_its_line() {
        let path = Path::new("items.jsonl");
        let lines = [1, 2, 5];
        assert_eq!(
            with_line("items[2].embedding: has 3 values", path, &lines),
            "items.jsonl line 5: items[2].embedding: has 3 values"
        );
        assert_eq!(
            with_line("catalog.max_items: full", path, &lines),
            "catalog.max_items: full"
        );
        assert_eq!(
            with_line("items[9].price: bad", path, &lines),
            "items[9].price: bad"
        );
    }
}
