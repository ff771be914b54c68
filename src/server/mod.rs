//! The HTTP API: `POST /api/predict` (an image, DICOM or NIfTI file as multipart or as the raw body) → class,
//! probabilities and a Grad-CAM overlay; `GET /healthz`; `GET /openapi.json` (the API's description); `GET /` a
//! page to drop an image on.
//!
//! Access and privacy: with a token (`--token` / `TUMORNET_TOKEN`) every `/api/` route needs `Authorization:
//! Bearer <token>` (401 otherwise; compared in constant time); [`serve`] refuses a non-loopback address without
//! one unless told to allow it. Uploads are read in memory, never written to disk, and neither they, their names
//! nor anything read from them (DICOM patient identifiers included) is logged; an answer carries only the upload's
//! name, the slice, and what the model computed.
//!
//! Inference is CPU-bound: it runs on blocking threads, at most `concurrency` at a time; requests beyond that wait
//! for a slot until the request timeout. Bad input is a 4xx JSON error (`{"error": …}`), never a 5xx: 400 for a
//! file that is not a readable image, 413 for a body over the limit, 408 for a request that runs out of time,
//! 503 when no slot frees in time.

use crate::cam::{compute, CamMethod};
use crate::data::batcher::images_to_tensor;
use crate::data::decode::decode_bytes;
use crate::data::medical::{self, MedicalKind, SliceSelection, VolumeOptions};
use crate::data::preprocess::resize_rgb;
use crate::data::Class;
use crate::model::run::{self, RunConfig};
use crate::model::ResNet18;
use crate::viz::colormap;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use base64::Engine;
use burn::module::Module;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub run: PathBuf,
    pub addr: SocketAddr,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Requests computed at once.
    pub concurrency: usize,
    /// Time for a whole request, waiting for a slot included.
    pub timeout: Duration,
    /// Time a client has to send its request headers (slow-loris clients are cut off after it).
    pub header_timeout: Duration,
    pub method: CamMethod,
    /// Weight of the image in the overlay.
    pub image_weight: f32,
    /// A segmentation run (from `train-seg`): each prediction also gets the U-Net's tumour mask, gated by the
    /// classifier's prediction.
    pub seg: Option<PathBuf>,
    /// Bearer token every `/api/` request must carry; `None`: no authentication.
    pub token: Option<String>,
    /// Listen on a non-loopback address without a token (refused otherwise).
    pub allow_unauthenticated: bool,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Run(#[from] run::RunError),
    #[error("{0:#}")]
    Seg(anyhow::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server stopped: {0}")]
    Serve(#[source] std::io::Error),
    #[error(
        "{0} is reachable from other machines and no token is set: give one with --token or TUMORNET_TOKEN \
         (clients then send `Authorization: Bearer <token>`), listen on 127.0.0.1, or pass \
         --allow-unauthenticated to serve without one"
    )]
    Unprotected(SocketAddr),
    #[error("the token is empty")]
    EmptyToken,
}

pub struct AppState {
    /// Cloned per request (burn modules share their parameters between clones).
    model: ResNet18,
    config: RunConfig,
    slots: Arc<tokio::sync::Semaphore>,
    timeout: Duration,
    method: CamMethod,
    image_weight: f32,
    max_body: usize,
    /// The segmentation run (its U-Net, classifier and settings) and its mask rule.
    seg: Option<(
        crate::train::segrun::SegModel,
        crate::train::segmentation::MaskRule,
    )>,
    /// SHA-256 of the classifier's weights file and of the U-Net's (with a segmentation run).
    model_sha256: String,
    seg_sha256: Option<String>,
    /// SHA-256 of the token (compared digest to digest, in constant time).
    token_sha256: Option<[u8; 32]>,
}

/// A prediction as the API returns it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiPrediction {
    /// The upload's name, with the slice for a DICOM/NIfTI file (`scan.nii.gz#axial:88`).
    pub input: String,
    pub class: Class,
    pub confidence: f32,
    pub probabilities: BTreeMap<Class, f32>,
    /// The CAM method and the class it explains.
    pub cam_method: CamMethod,
    pub cam_target: Class,
    /// PNG of the overlay on the image as uploaded, base64.
    pub overlay_png: String,
    /// With a segmentation run: the binary tumour mask at the size of the image as uploaded (8-bit grey PNG, 255
    /// inside, 0 outside; base64), the outline drawn on the image (PNG, base64), and the fraction of the image the
    /// mask covers (0 when the classifier says no tumour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_png: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outline_png: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tumour_fraction: Option<f64>,
    /// With `?volume=true`, a NIfTI upload and a segmentation run: the mask of the whole volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeAnswer>,
    /// SHA-256 of the classifier's weights file, and of the U-Net's with a segmentation run: which model answered.
    pub model_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seg_model_sha256: Option<String>,
    /// Milliseconds of computing (decode, forward, CAM).
    pub compute_ms: u64,
}

/// The mask of a whole NIfTI volume, as `segment` makes it: every slice along the plane classified and, where the
/// segmentation run's classifier sees a tumour, segmented; the slices put back in the input's voxel order.
#[derive(Debug, Serialize, Deserialize)]
pub struct VolumeAnswer {
    /// The label volume (1 tumour, 0 elsewhere) as a gzip-compressed NIfTI-1 file with the upload's dimensions,
    /// voxel order, sform and qform, base64.
    pub mask_nii_gz: String,
    pub plane: medical::Plane,
    pub slices: usize,
    /// Slices with any tumour voxel.
    pub tumour_slices: usize,
    pub tumour_voxels: usize,
    /// From the header's voxel sizes (millimetres assumed).
    pub tumour_ml: f64,
}

/// Query parameters of `POST /api/predict`.
#[derive(Debug, Default, Deserialize)]
pub struct PredictQuery {
    /// The file's name (raw bodies): its extension tells DICOM and NIfTI apart.
    pub name: Option<String>,
    /// NIfTI: plane; slice index (default: the middle). DICOM: frame index.
    pub plane: Option<medical::Plane>,
    pub slice: Option<usize>,
    /// NIfTI with a segmentation run: also segment every slice along the plane and answer with the mask volume.
    pub volume: Option<bool>,
}

/// An API error: status and message, sent as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
}

/// A body that could not be read: 413 when it is over the limit, else 400 (never a 5xx: it is the client's body).
fn unreadable_body(status: StatusCode, detail: String, limit: usize) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError(
            status,
            format!("the upload exceeds the limit of {limit} bytes"),
        )
    } else {
        bad(format!("cannot read the request body: {detail}"))
    }
}

/// Run CPU-bound work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| internal(format!("worker failed: {e}")))?
}

fn png_bytes(image: image::DynamicImage) -> Result<Vec<u8>, ApiError> {
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(internal)?;
    Ok(png)
}

/// Load the run and build the router (tests serve it on an ephemeral port).
pub fn router(config: &ServerConfig) -> Result<Router, ServerError> {
    let device = crate::device::inference();
    let (model, run_config) = run::load_run(&config.run, &device)?;
    let seg = match &config.seg {
        Some(dir) => {
            let loaded = crate::train::segrun::load_segrun(dir, true).map_err(ServerError::Seg)?;
            let rule = loaded.config.mask_rule();
            Some((loaded, rule))
        }
        None => None,
    };
    let hash = |path: PathBuf| crate::model::fetch::sha256_file(&path).map_err(ServerError::Seg);
    let model_sha256 = hash(config.run.join(run::MODEL_FILE))?;
    let seg_sha256 = match &config.seg {
        Some(dir) => Some(hash(dir.join(crate::train::segrun::UNET_FILE))?),
        None => None,
    };
    let token_sha256 = match config.token.as_deref() {
        Some("") => return Err(ServerError::EmptyToken),
        Some(token) => Some(token_digest(token)),
        None => None,
    };
    let state = Arc::new(AppState {
        model: model.train().fork(&crate::device::training()),
        config: run_config,
        slots: Arc::new(tokio::sync::Semaphore::new(config.concurrency.max(1))),
        timeout: config.timeout,
        method: config.method,
        image_weight: config.image_weight,
        max_body: config.max_body,
        seg,
        model_sha256,
        seg_sha256,
        token_sha256,
    });
    let mut router = Router::new();
    for (path, _, route) in routes() {
        router = router.route(path, route);
    }
    Ok(router
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .layer(DefaultBodyLimit::max(config.max_body))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.timeout,
        ))
        .with_state(state))
}

/// The routes, each with its HTTP method: `/openapi.json` describes exactly these (a test holds them together).
/// Every route under `/api/` needs the token when one is set.
pub fn routes() -> Vec<(&'static str, &'static str, MethodRouter<Arc<AppState>>)> {
    vec![
        ("/", "get", get(index)),
        ("/healthz", "get", get(healthz)),
        ("/openapi.json", "get", get(openapi)),
        ("/api/predict", "post", post(predict)),
        ("/api/example", "get", get(example)),
    ]
}

/// The description of the API (OpenAPI 3.1).
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn token_digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Whether two digests are equal, looking at every byte whatever the first difference (no early exit to time).
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// With a token set, every `/api/` request must carry `Authorization: Bearer <token>`: 401 otherwise.
async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(expected) = &state.token_sha256 else {
        return next.run(request).await;
    };
    if !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|token| token_digest(token.trim()));
    if given.is_some_and(|given| same_digest(&given, expected)) {
        return next.run(request).await;
    }
    let mut response = ApiError(
        StatusCode::UNAUTHORIZED,
        "this server needs a token: send `Authorization: Bearer <token>`".into(),
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Serve until Ctrl-C. A non-loopback address needs a token, or `allow_unauthenticated`.
pub async fn serve(config: ServerConfig) -> Result<(), ServerError> {
    if !config.addr.ip().is_loopback() && config.token.is_none() && !config.allow_unauthenticated {
        return Err(ServerError::Unprotected(config.addr));
    }
    let app = router(&config)?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.addr,
            source,
        })?;
    let local = listener.local_addr().map_err(ServerError::Serve)?;
    tracing::info!(
        "serving {} on http://{local}/{}",
        config.run.display(),
        if config.token.is_some() {
            " (token required for /api/)"
        } else {
            ""
        }
    );
    serve_on(listener, app, config.header_timeout, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}

/// Accept connections on `listener` until `shutdown` completes; each connection (HTTP/1.1 or HTTP/2) must send its
/// request headers within `header_timeout`. (axum's own `serve` sets no such limit, so a slow-loris client could
/// hold a connection for ever.)
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("accepting a connection: {e}");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
}

async fn index() -> Html<&'static str> {
    Html(include_str!("index.html"))
}

async fn healthz(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "stage": state.config.stage,
        "classes": state.config.classes,
        "model_sha256": state.model_sha256,
        "seg_model_sha256": state.seg_sha256,
        "token_required": state.token_sha256.is_some(),
        "free_slots": state.slots.available_permits(),
    }))
}

/// Query of `GET /api/example`.
#[derive(Debug, Deserialize)]
pub struct ExampleQuery {
    pub class: Class,
    #[serde(default = "one")]
    pub number: usize,
}

fn one() -> usize {
    1
}

/// The lesion scale of the example images: that of the offline demo (the built-in backbone's) for a run that
/// started from the phantom backbone or from random init, which only learn phantom lesions at that scale;
/// realistic sizes otherwise.
fn example_lesion_scale(origin: &crate::model::run::WeightsOrigin) -> f32 {
    match origin {
        crate::model::run::WeightsOrigin::File { .. } => 1.0,
        _ => crate::model::backbone::PHANTOM_LESION_SCALE,
    }
}

/// A phantom test image of a class (seed 0, as `tumornet synth` makes it; lesions at the scale the run can see,
/// see [`example_lesion_scale`]), as PNG: something to try the page on.
async fn example(
    State(state): State<Arc<AppState>>,
    query: Result<Query<ExampleQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| bad(e.body_text()))?;
    let lesion_scale = example_lesion_scale(&state.config.weights_origin);
    let png = blocking(move || {
        use crate::data::phantom::{render, ImageId, SynthConfig};
        let config = SynthConfig {
            train_per_class: 0,
            test_per_class: query.number.max(1),
            seed: 0,
            min_size: 256,
            max_size: 256,
            jpeg_quality: 90,
            lesion_scale,
            without_lesions: false,
            anatomy: None,
        };
        let id = ImageId {
            split: crate::data::scan::Split::Testing,
            class: query.class,
            number: query.number.clamp(1, 10_000),
        };
        let rendered = render(&config, id).map_err(internal)?;
        png_bytes(image::DynamicImage::ImageLuma8(rendered.image))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

async fn not_found() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "no such route; try POST /api/predict".into(),
    )
}

async fn predict(
    State(state): State<Arc<AppState>>,
    query: Result<Query<PredictQuery>, QueryRejection>,
    request: Request,
) -> Result<Json<ApiPrediction>, ApiError> {
    let Query(query) = query.map_err(|e| bad(e.body_text()))?;
    let (name, bytes) = read_upload(request, &query, &state).await?;
    if bytes.is_empty() {
        return Err(bad("the upload is empty"));
    }
    let permit = tokio::time::timeout(state.timeout, state.slots.clone().acquire_owned())
        .await
        .map_err(|_| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is busy; try again".into(),
            )
        })?
        .map_err(|_| ApiError(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into()))?;
    let worker = state.clone();
    let prediction = blocking(move || {
        let _permit = permit;
        explain(&worker, &name, &bytes, &query)
    })
    .await?;
    Ok(Json(prediction))
}

/// The upload's name and bytes: the `file` field (or the first field with data) of a multipart form, else the
/// raw body.
async fn read_upload(
    request: Request,
    query: &PredictQuery,
    state: &AppState,
) -> Result<(String, Vec<u8>), ApiError> {
    let limit = state.max_body;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(request, &())
            .await
            .map_err(|e| bad(format!("malformed multipart form: {e}")))?;
        let unreadable = |e: axum::extract::multipart::MultipartError| {
            unreadable_body(e.status(), e.body_text(), limit)
        };
        while let Some(field) = form.next_field().await.map_err(unreadable)? {
            let name = field
                .file_name()
                .map(str::to_string)
                .or_else(|| query.name.clone())
                .unwrap_or_else(|| "upload".into());
            let data = field.bytes().await.map_err(unreadable)?;
            if !data.is_empty() {
                return Ok((name, data.to_vec()));
            }
        }
        return Err(bad("the multipart form has no file"));
    }
    if content_type.starts_with("text/") || content_type.starts_with("application/json") {
        return Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "send an image file (multipart/form-data or the raw bytes), not {content_type}"
            ),
        ));
    }
    // Read through the extractor so that the DefaultBodyLimit layer applies.
    let body = axum::body::Bytes::from_request(request, &())
        .await
        .map_err(|e| unreadable_body(e.status(), e.body_text(), limit))?;
    Ok((
        query.name.clone().unwrap_or_else(|| "upload".into()),
        body.to_vec(),
    ))
}

/// Decode, classify and explain one upload.
fn explain(
    state: &AppState,
    name: &str,
    bytes: &[u8],
    query: &PredictQuery,
) -> Result<ApiPrediction, ApiError> {
    let start = std::time::Instant::now();
    let (input, image) = decode_upload(name, bytes, query)?;
    let size = state.config.input_size;
    let resized = resize_rgb(&image, size, size).map_err(|e| bad(format!("{name}: {e}")))?;
    let model = state.model.clone();
    let device = crate::device::training();
    let x = images_to_tensor(std::slice::from_ref(&resized), &device)
        .map_err(|e| bad(format!("{name}: {e}")))?;
    let cam = compute(&model, x, state.method, &[None]).map_err(internal)?;
    let probabilities = &cam.probabilities[0];
    let (best, confidence) = crate::metrics::argmax(probabilities);
    let side = size as usize;
    let map = cam.finished(0, side, side);
    let overlay = colormap::overlay_resized(&image, &map, side, side, state.image_weight)
        .map_err(internal)?;
    let png = png_bytes(image::DynamicImage::ImageRgb8(overlay))?;
    let classes = &state.config.classes;
    let (mask_png, outline_png, tumour_fraction) = match &state.seg {
        Some((seg, rule)) => {
            let (unet, side) = (&seg.unet, &seg.config.side);
            let small =
                resize_rgb(&image, *side, *side).map_err(|e| bad(format!("{name}: {e}")))?;
            let logits = crate::train::segmentation::predict_logits(
                unet,
                std::slice::from_ref(&small),
                1,
                rule.flip,
            )
            .map_err(internal)?;
            let tumour = classes[best].is_tumour();
            let mask = crate::train::segmentation::image_mask(
                logits.first().map(Vec::as_slice).unwrap_or_default(),
                &small,
                rule,
                tumour,
            );
            let mask = match rule.confirm && tumour {
                true => crate::train::segrun::checked_mask(seg, &image, best, confidence, mask)
                    .map_err(internal)?,
                false => mask,
            };
            let outline =
                crate::viz::masks::contour_overlay(&image, &mask, *side, *side, [255, 40, 40]);
            let fraction = mask.iter().filter(|m| **m).count() as f64 / mask.len().max(1) as f64;
            let small =
                image::GrayImage::from_raw(*side, *side, crate::cam::pseudo::to_stored(&mask))
                    .ok_or_else(|| internal("mask size"))?;
            let (width, height) = image.dimensions();
            let full = crate::data::preprocess::resize_mask(&small, width, height)
                .map_err(|e| bad(format!("{name}: {e}")))?;
            let encode = |png: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(png);
            (
                Some(encode(png_bytes(image::DynamicImage::ImageLuma8(full))?)),
                Some(encode(png_bytes(image::DynamicImage::ImageRgb8(outline))?)),
                Some(fraction),
            )
        }
        None => (None, None, None),
    };
    let volume = if query.volume == Some(true) {
        Some(volume_mask(state, name, bytes, query)?)
    } else {
        None
    };
    Ok(ApiPrediction {
        volume,
        input,
        class: classes[best],
        confidence,
        probabilities: classes
            .iter()
            .copied()
            .zip(probabilities.iter().copied())
            .collect(),
        cam_method: state.method,
        cam_target: classes[cam.targets[0]],
        overlay_png: base64::engine::general_purpose::STANDARD.encode(png),
        mask_png,
        outline_png,
        tumour_fraction,
        model_sha256: state.model_sha256.clone(),
        seg_model_sha256: state.seg_sha256.clone(),
        compute_ms: start.elapsed().as_millis() as u64,
    })
}

/// Segment every slice of a NIfTI upload along the query's plane and gather the masks into a volume aligned to it.
fn volume_mask(
    state: &AppState,
    name: &str,
    bytes: &[u8],
    query: &PredictQuery,
) -> Result<VolumeAnswer, ApiError> {
    let Some((seg, rule)) = &state.seg else {
        return Err(bad(
            "a mask volume needs a segmentation run: start the server with --seg SEGRUN",
        ));
    };
    let named = Path::new(name);
    let is_nifti = medical::kind_by_name(Path::new(&name.to_ascii_lowercase()))
        == Some(MedicalKind::Nifti)
        || bytes.starts_with(&[0x1f, 0x8b]);
    if !is_nifti {
        return Err(bad(format!(
            "{name}: ?volume=true takes a NIfTI volume (.nii or .nii.gz)"
        )));
    }
    let plane = query.plane.unwrap_or_default();
    let options = VolumeOptions {
        plane,
        slices: SliceSelection::All,
        volume: 0,
        dicom_series: false,
    };
    let slices = medical::read_slices_in(named, Some(bytes), MedicalKind::Nifti, &options)
        .map_err(|e| bad(e.to_string()))?;
    let geometry =
        medical::nifti::VolumeGeometry::from_bytes(named, bytes).map_err(|e| bad(e.to_string()))?;
    let mut labels = geometry.empty_labels();
    let side = seg.config.side;
    for chunk in slices.chunks(32) {
        let images: Vec<image::RgbImage> = chunk
            .iter()
            .map(|s| medical::gray_to_rgb(&s.image))
            .collect();
        // A volume's slices: as `segment` gives them.
        let in_volume = vec![true; images.len()];
        let results = crate::train::segrun::segment_images(seg, &images, &in_volume, true, rule)
            .map_err(internal)?;
        for (slice, (_, mask)) in chunk.iter().zip(results) {
            let Some((plane, index)) = slice.position else {
                continue;
            };
            if !mask.iter().any(|m| *m) {
                continue;
            }
            let small =
                image::GrayImage::from_raw(side, side, crate::cam::pseudo::to_stored(&mask))
                    .ok_or_else(|| internal("mask size"))?;
            let (width, height) = slice.image.dimensions();
            let full = crate::data::preprocess::resize_mask(&small, width, height)
                .map_err(|e| bad(format!("{name}: {e}")))?;
            geometry
                .place(&mut labels, plane, index, &full, 1)
                .map_err(|e| bad(format!("{name}: {e}")))?;
        }
    }
    // As `segment` finishes a mask volume: its largest connected component.
    crate::cam::pseudo::keep_largest_volume_component(&mut labels);
    let (canonical, _) = geometry.to_canonical(&labels);
    let tumour_slices = canonical
        .axis_iter(ndarray::Axis(medical::nifti::CanonicalVolume::axis(plane)))
        .filter(|s| s.iter().any(|v| *v > 0))
        .count();
    let tumour_voxels = labels.iter().filter(|v| **v > 0).count();
    let nii_gz = geometry.labels_nii_gz(&labels).map_err(internal)?;
    Ok(VolumeAnswer {
        mask_nii_gz: base64::engine::general_purpose::STANDARD.encode(nii_gz),
        plane,
        slices: slices.len(),
        tumour_slices,
        tumour_voxels,
        tumour_ml: tumour_voxels as f64 * geometry.voxel_ml(),
    })
}

/// An upload as one RGB image: JPEG/PNG/… directly; DICOM and NIfTI (by name or the DICM marker) through a
/// temporary file, taking the requested (or middle) slice.
fn decode_upload(
    name: &str,
    bytes: &[u8],
    query: &PredictQuery,
) -> Result<(String, image::RgbImage), ApiError> {
    let lower = name.to_ascii_lowercase();
    // Uploads are in memory, so the DICOM marker is looked for whatever the name says.
    let kind = medical::kind_by_name(Path::new(&lower))
        .or_else(|| medical::dicom::has_marker(bytes).then_some(MedicalKind::Dicom));
    let Some(kind) = kind else {
        let image = decode_bytes(bytes, Path::new(name)).map_err(|e| bad(e.to_string()))?;
        return Ok((name.to_string(), image));
    };
    // Read from memory under the upload's own name: an upload is never written to disk.
    let named = Path::new(name);
    let options = VolumeOptions {
        plane: query.plane.unwrap_or_default(),
        slices: query
            .slice
            .map_or(SliceSelection::Middle, |i| SliceSelection::List(vec![i])),
        volume: 0,
        dicom_series: false,
    };
    let slices = medical::read_slices_in(named, Some(bytes), kind, &options)
        .map_err(|e| bad(e.to_string()))?;
    let slice = slices
        .into_iter()
        .next()
        .ok_or_else(|| bad(format!("{name}: no slice to read")))?;
    let input = match slice.name.rsplit_once('#') {
        Some((_, part)) => format!("{name}#{part}"),
        None => name.to_string(),
    };
    Ok((input, medical::gray_to_rgb(&slice.image)))
}
