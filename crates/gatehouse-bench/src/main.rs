//! `gatehouse-bench`: benchmarks that hold Gatehouse to the physical limits (issue #7).
//!
//! It starts `gatehouse serve` child processes on loopback with throwaway databases, seeds
//! them directly, drives them with a tokio/reqwest (hyper) load generator and compares every
//! figure with a baseline measured in the same run. Run it through `bench/run.sh`.
//!
//! ```text
//! gatehouse-bench [--smoke] [--only sqlite|scale|postgres] [--gatehouse PATH] [--out FILE]
//! gatehouse-bench hello --bind ADDR     # the baseline axum server (started by the bench)
//! ```
#![allow(clippy::print_stdout)]

mod hello;
mod load;
mod proc;
mod scenarios;
mod seed;

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::ExitCode;

/// One line of the result table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    pub scenario: String,
    pub figure: f64,
    pub unit: String,
    pub baseline: Option<f64>,
    pub ratio: Option<f64>,
    pub target: String,
    /// `None` for rows that only inform.
    pub pass: Option<bool>,
}

pub struct Opts {
    pub smoke: bool,
    pub gatehouse: PathBuf,
    pub bench: PathBuf,
    pub out: Option<PathBuf>,
    /// `sqlite`, `scale` or `postgres`: run only that group (the baselines always run).
    pub only: Option<String>,
}

fn parse_args() -> Result<Option<Opts>> {
    let mut args = std::env::args().skip(1);
    let exe = std::env::current_exe().context("current_exe")?;
    let mut opts = Opts {
        smoke: false,
        gatehouse: exe.with_file_name("gatehouse"),
        bench: exe,
        out: None,
        only: None,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--smoke" => opts.smoke = true,
            "--gatehouse" => opts.gatehouse = args.next().context("--gatehouse PATH")?.into(),
            "--out" => opts.out = Some(args.next().context("--out FILE")?.into()),
            "--only" => opts.only = Some(args.next().context("--only sqlite|scale|postgres")?),
            "hello" => return Ok(None),
            "-h" | "--help" => {
                println!(
                    "gatehouse-bench [--smoke] [--only sqlite|scale|postgres] [--gatehouse PATH] [--out FILE]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if !opts.gatehouse.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p gatehouse`",
            opts.gatehouse.display()
        );
    }
    // Children run in their own temporary directories.
    opts.gatehouse = std::fs::canonicalize(&opts.gatehouse)?;
    Ok(Some(opts))
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gatehouse-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<ExitCode> {
    let Some(opts) = parse_args()? else {
        let mut args = std::env::args().skip(2);
        let mut bind = "127.0.0.1:0".to_string();
        while let Some(a) = args.next() {
            if a == "--bind" {
                bind = args.next().context("--bind ADDR")?;
            }
        }
        hello::serve(&bind).await?;
        return Ok(ExitCode::SUCCESS);
    };
    let machine = machine(&opts);
    println!(
        "gatehouse-bench ({}) on {} × {} — {}",
        if opts.smoke { "smoke" } else { "full" },
        machine["cores"],
        machine["cpu"].as_str().unwrap_or("?"),
        machine["date"].as_str().unwrap_or("?"),
    );
    let started = std::time::Instant::now();
    let (rows, expected) = scenarios::all(&opts).await;
    print_table(&rows);
    println!("total {:.0} s", started.elapsed().as_secs_f64());
    if let Some(out) = &opts.out {
        let doc = serde_json::json!({ "machine": machine, "rows": rows });
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", out.display()))?;
        println!("wrote {}", out.display());
    }
    // A row whose figure, baseline or ratio is not a number measured nothing: it counts
    // as missing (e.g. every request of one side failed).
    let measured = |r: &Row| {
        r.figure.is_finite()
            && r.baseline.is_none_or(f64::is_finite)
            && r.ratio.is_none_or(f64::is_finite)
    };
    let missing: Vec<&String> = expected
        .iter()
        .filter(|name| !rows.iter().any(|r| &&r.scenario == name && measured(r)))
        .collect();
    if !missing.is_empty() {
        eprintln!("gatehouse-bench: missing rows: {missing:?}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn machine(opts: &Opts) -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_mib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kib| kib / 1024);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    serde_json::json!({
        "cpu": cpu,
        "loadavg_at_start": loadavg,
        "cores": scenarios::cores(),
        "memory_mib": mem_mib,
        "kernel": kernel,
        "date": date,
        "mode": if opts.smoke { "smoke" } else { "full" },
        "postgres_redis": scenarios::pg_urls().is_some(),
    })
}

fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The result table as Markdown (printed, and pasted into docs/benchmarks.md).
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| scenario | figure | baseline | ratio | target | pass |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} {} | {} | {} | {} | {} |\n",
            r.scenario,
            fmt_num(r.figure),
            r.unit,
            r.baseline.map(fmt_num).unwrap_or_else(|| "–".into()),
            r.ratio
                .map(|v| format!("{v:.3}"))
                .unwrap_or_else(|| "–".into()),
            r.target,
            match r.pass {
                Some(true) => "pass",
                Some(false) => "FAIL",
                None => "info",
            }
        ));
    }
    s
}

fn print_table(rows: &[Row]) {
    println!();
    print!("{}", table(rows));
    let fails = rows.iter().filter(|r| r.pass == Some(false)).count();
    let passes = rows.iter().filter(|r| r.pass == Some(true)).count();
    println!("\n{passes} pass, {fails} fail (targets are reported, never enforced)");
}
