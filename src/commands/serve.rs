//! `tumornet serve RUN [--addr 127.0.0.1:8080]`: the HTTP API and web page (`crate::server`), until Ctrl-C.

use crate::cli::ServeArgs;
use crate::server::{serve, ServerConfig};
use anyhow::Context;

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let config = ServerConfig {
        run: args.run.clone(),
        addr: args.addr,
        max_body: args.max_upload_mib.max(1) * 1024 * 1024,
        concurrency: args.concurrency.max(1),
        timeout: std::time::Duration::from_secs(args.timeout.max(1)),
        header_timeout: std::time::Duration::from_secs(args.header_timeout.max(1)),
        method: args.method,
        image_weight: args.image_weight,
        seg: args.seg.clone(),
        token: args.token.clone(),
        allow_unauthenticated: args.allow_unauthenticated,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))?;
    Ok(())
}
