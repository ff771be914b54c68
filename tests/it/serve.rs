//! The HTTP API on loopback: answers, errors as 4xx JSON, DICOM/NIfTI uploads (a raw HTTP/1.1 client, so
//! malformed requests can be sent too).

use crate::common::{fixtures, import_formula_run, temp_dir};
use base64::Engine;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct Server {
    pub addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
    _dir: Option<tempfile::TempDir>,
}

fn start(max_body: usize) -> Server {
    let dir = temp_dir();
    let run = import_formula_run(dir.path());
    launch(run, None, max_body, Some(dir), None)
}

/// Serve `run` (and the segmentation run `seg`) on an ephemeral loopback port; `dir` lives as long as the server.
pub fn launch(
    run: std::path::PathBuf,
    seg: Option<std::path::PathBuf>,
    max_body: usize,
    dir: Option<tempfile::TempDir>,
    token: Option<&str>,
) -> Server {
    let config = tumornet::server::ServerConfig {
        run,
        seg,
        addr: "127.0.0.1:0".parse().expect("addr"),
        max_body,
        concurrency: 2,
        timeout: Duration::from_secs(60),
        header_timeout: Duration::from_secs(2),
        method: tumornet::cam::CamMethod::GradCam,
        image_weight: 0.5,
        token: token.map(str::to_string),
        allow_unauthenticated: false,
    };
    let app = tumornet::server::router(&config).expect("router");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(config.addr))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    runtime.spawn(tumornet::server::serve_on(
        listener,
        app,
        config.header_timeout,
        std::future::pending(),
    ));
    Server {
        addr,
        _runtime: runtime,
        _dir: dir,
    }
}

/// One request on its own connection; returns the status and the body.
pub fn http(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let request = format!(
        "{head}\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write head");
    // The server may answer (413) and close before the whole body is sent.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut body = response[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..end]).expect("size").trim(), 16)
                .expect("hex size");
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
    out
}

pub fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

fn phantom_image() -> (Vec<u8>, (u32, u32)) {
    let dir = temp_dir();
    let config = tumornet::data::phantom::SynthConfig {
        train_per_class: 1,
        test_per_class: 0,
        seed: 4,
        min_size: 160,
        max_size: 200,
        jpeg_quality: 90,
        lesion_scale: 1.0,
        without_lesions: false,
        anatomy: None,
    };
    tumornet::data::phantom::generate(dir.path(), &config, &|| {}).expect("phantom");
    let path = dir.path().join("Training/glioma/Tr-gl_0001.jpg");
    (
        std::fs::read(&path).expect("jpeg"),
        image::image_dimensions(&path).expect("size"),
    )
}

#[test]
fn predict_health_page_and_errors() {
    let server = start(256 * 1024);
    let addr = server.addr;

    let (status, body) = http(addr, "GET /healthz HTTP/1.1", b"");
    assert_eq!(status, 200);
    assert_eq!(json(&body)["status"], "ok");
    let (status, body) = http(addr, "GET / HTTP/1.1", b"");
    assert_eq!(status, 200);
    let page = String::from_utf8_lossy(&body).to_string();
    assert!(
        page.contains("id=\"overlay\"")
            && page.contains("Research use only, not for clinical decisions.")
    );

    // A raw JPEG body.
    let (jpeg, size) = phantom_image();
    let (status, body) = http(
        addr,
        "POST /api/predict?name=scan.jpg HTTP/1.1\r\nContent-Type: image/jpeg",
        &jpeg,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer = json(&body);
    assert_eq!(answer["input"], "scan.jpg");
    let probabilities = answer["probabilities"].as_object().expect("probabilities");
    let sum: f64 = probabilities.values().map(|v| v.as_f64().expect("p")).sum();
    assert!((sum - 1.0).abs() < 1e-4, "{sum}");
    assert!(probabilities.contains_key(answer["class"].as_str().expect("class")));
    let png = base64::engine::general_purpose::STANDARD
        .decode(answer["overlay_png"].as_str().expect("overlay"))
        .expect("base64");
    let overlay = image::load_from_memory_with_format(&png, image::ImageFormat::Png).expect("png");
    assert_eq!(
        (overlay.width(), overlay.height()),
        size,
        "overlay at the upload's size"
    );

    // The same image as a multipart form field.
    let boundary = "XyZboundary";
    let mut form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"form.jpg\"\r\n\
         Content-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    form.extend_from_slice(&jpeg);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (status, body) = http(
        addr,
        &format!(
            "POST /api/predict HTTP/1.1\r\nContent-Type: multipart/form-data; boundary={boundary}"
        ),
        &form,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["input"], "form.jpg");

    // DICOM and NIfTI uploads.
    let dicom = std::fs::read(fixtures().join("medical/MR_small.dcm")).expect("dcm");
    let (status, body) = http(
        addr,
        "POST /api/predict?name=MR_small.dcm HTTP/1.1\r\nContent-Type: application/dicom",
        &dicom,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let nifti = std::fs::read(fixtures().join("medical/colin27_lps.nii.gz")).expect("nii");
    let (status, body) = http(
        addr,
        "POST /api/predict?name=head.nii.gz&plane=coronal HTTP/1.1\r\nContent-Type: application/octet-stream",
        &nifti,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["input"], "head.nii.gz#coronal:27");

    // Bad input: 4xx JSON errors, never 5xx.
    let cases: Vec<(String, Vec<u8>, u16, &str)> = vec![
        (
            "POST /api/predict?name=x.jpg HTTP/1.1\r\nContent-Type: image/jpeg".into(),
            b"not an image at all".to_vec(),
            400,
            "x.jpg",
        ),
        (
            "POST /api/predict HTTP/1.1\r\nContent-Type: image/png".into(),
            Vec::new(),
            400,
            "empty",
        ),
        (
            "POST /api/predict HTTP/1.1\r\nContent-Type: text/plain".into(),
            b"hello".to_vec(),
            415,
            "text/plain",
        ),
        (
            "POST /api/predict HTTP/1.1\r\nContent-Type: image/jpeg".into(),
            vec![0u8; 300 * 1024],
            413,
            "limit",
        ),
        (
            format!("POST /api/predict HTTP/1.1\r\nContent-Type: multipart/form-data; boundary={boundary}"),
            b"--XyZboundary\r\nbroken".to_vec(),
            400,
            "multipart",
        ),
        (
            "POST /api/predict?name=bad.dcm HTTP/1.1\r\nContent-Type: application/dicom".into(),
            dicom[..dicom.len() / 2].to_vec(),
            400,
            "bad.dcm",
        ),
        (
            "POST /api/predict?plane=diagonal HTTP/1.1\r\nContent-Type: image/jpeg".into(),
            jpeg.clone(),
            400,
            "plane",
        ),
        ("GET /api/example?class=astrocytoma HTTP/1.1".into(), Vec::new(), 400, "class"),
        ("GET /etc/passwd HTTP/1.1".into(), Vec::new(), 404, "no such route"),
        ("GET /../../etc/passwd HTTP/1.1".into(), Vec::new(), 404, "no such route"),
    ];
    for (head, body, want, needle) in cases {
        let (status, answer) = http(addr, &head, &body);
        assert_eq!(status, want, "{head}: {}", String::from_utf8_lossy(&answer));
        let text = json(&answer)["error"].as_str().expect("error").to_string();
        assert!(text.contains(needle), "{head}: {text}");
    }
    // A slow-loris client (headers dribbled, never finished) is cut off after the header timeout (2 s here).
    let mut loris = TcpStream::connect(addr).expect("connect");
    loris
        .write_all(b"POST /api/predict HTTP/1.1\r\nHost: x\r\n")
        .expect("start");
    loris
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let start = std::time::Instant::now();
    let mut buffer = [0u8; 256];
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "slow-loris connection still open"
        );
        if loris.write_all(b"X-Dribble: 1\r\n").is_err() {
            break;
        }
        match loris.read(&mut buffer) {
            Ok(_) => break, // closed (0) or answered
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let held = start.elapsed();
    assert!(
        held >= Duration::from_millis(1500),
        "closed too early: {held:?}"
    );
    // Still healthy.
    assert_eq!(http(addr, "GET /healthz HTTP/1.1", b"").0, 200);
}

fn chromium() -> Option<std::path::PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .filter_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|p| p.is_file())
            })
        })
        .next()
}

#[test]
fn the_page_uploads_a_phantom_image_in_a_headless_browser() {
    let Some(browser) = chromium() else {
        // .ci/run installs chromium and sets TUMORNET_REQUIRE_BROWSER, so CI cannot skip this silently; a
        // developer's `cargo test` without a browser skips it with this note.
        assert!(
            std::env::var_os("TUMORNET_REQUIRE_BROWSER").is_none(),
            "no chromium on PATH (Debian: apt-get install chromium)"
        );
        // Written to the process's stderr directly, past libtest's capture, so the skip shows in every run's
        // output and not only when a test fails.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED the_page_uploads_a_phantom_image_in_a_headless_browser: no chromium on PATH (Debian: apt-get \
             install chromium)"
        );
        return;
    };
    let server = start(32 * 1024 * 1024);
    // The page fetches a phantom glioma image from /api/example, uploads it through the same form path a dropped
    // file takes, and renders the answer.
    let url = format!("http://{}/?example=glioma", server.addr);
    let profile = temp_dir();
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--virtual-time-budget=60000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("run chromium");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let dom = run(&["--dump-dom"]);
    let class = dom
        .split("id=\"result-class\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_default()
        .to_string();
    assert!(
        ["glioma", "meningioma", "notumor", "pituitary"].contains(&class.as_str()),
        "no predicted class in the page: {dom}"
    );
    assert!(
        dom.contains("id=\"overlay\" alt=\"Grad-CAM overlay\" src=\"data:image/png;base64,"),
        "the overlay did not render: {dom}"
    );
    assert!(dom.contains("phantom-glioma.png"), "{dom}");
    // Keep a screenshot with the test output.
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-page.png");
    let _ = std::fs::remove_file(&shot);
    run(&[
        "--window-size=820,1150",
        &format!("--screenshot={}", shot.display()),
    ]);
    let (w, h) = image::image_dimensions(&shot).expect("screenshot");
    assert!(w >= 800 && h >= 1000, "{w}×{h}");
    eprintln!("screenshot: {}", shot.display());
}

/// `/openapi.json` describes exactly the routes the server has, with the right methods; every `/api/` route and
/// only those need the token; every documented route answers.
#[test]
fn the_openapi_description_matches_the_routes() {
    let server = start(1024 * 1024);
    let (status, body) = http(server.addr, "GET /openapi.json HTTP/1.1", b"");
    assert_eq!(status, 200);
    let description = json(&body);
    assert_eq!(description["openapi"], "3.1.0");
    let mut documented: Vec<(String, String, bool)> = Vec::new();
    for (path, operations) in description["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            documented.push((
                path.clone(),
                method.clone(),
                operation.get("security").is_some(),
            ));
        }
    }
    let mut served: Vec<(String, String, bool)> = tumornet::server::routes()
        .into_iter()
        .map(|(path, method, _)| {
            (
                path.to_string(),
                method.to_string(),
                path.starts_with("/api/"),
            )
        })
        .collect();
    documented.sort();
    served.sort();
    assert_eq!(documented, served);
    // Every reference inside the description resolves.
    let text = String::from_utf8_lossy(&body).to_string();
    for reference in text.split("\"$ref\": \"#/").skip(1) {
        let pointer = format!("/{}", reference.split('"').next().expect("ref"));
        assert!(description.pointer(&pointer).is_some(), "{pointer}");
    }
    // Each documented route exists on the server (a wrong method would be 405, a missing route 404).
    for (path, method, _) in &documented {
        let target = match path.as_str() {
            "/api/example" => "/api/example?class=glioma".to_string(),
            other => other.to_string(),
        };
        let (status, answer) = http(
            server.addr,
            &format!(
                "{} {target} HTTP/1.1\r\nContent-Type: image/png",
                method.to_uppercase()
            ),
            b"",
        );
        assert!(
            ![404, 405].contains(&status),
            "{method} {path}: {status} {}",
            String::from_utf8_lossy(&answer)
        );
    }
}

/// With a token every /api/ route needs it (401 and `WWW-Authenticate: Bearer` otherwise), the page, health and
/// description stay open; health and answers name the model by its SHA-256; a non-loopback address without a token
/// is refused.
#[test]
fn a_token_guards_the_api_and_the_model_is_named_by_its_hash() {
    use sha2::Digest;
    let dir = temp_dir();
    let run = import_formula_run(dir.path());
    let expected_hash = format!(
        "{:x}",
        sha2::Sha256::digest(std::fs::read(run.join("model.safetensors")).expect("weights"))
    );
    let server = launch(run.clone(), None, 1 << 20, None, Some("correct horse"));
    let addr = server.addr;
    let (jpeg, _) = phantom_image();
    let predict = |authorization: &str| {
        http(
            addr,
            &format!(
                "POST /api/predict?name=a.jpg HTTP/1.1\r\n{authorization}Content-Type: image/jpeg"
            ),
            &jpeg,
        )
    };
    for authorization in [
        "",
        "Authorization: Bearer wrong\r\n",
        "Authorization: correct horse\r\n",
    ] {
        let (status, body) = predict(authorization);
        assert_eq!(status, 401, "{authorization:?}");
        assert!(json(&body)["error"]
            .as_str()
            .expect("error")
            .contains("Bearer"));
    }
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .write_all(
            b"GET /api/example?class=glioma HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .expect("write");
    let mut raw = String::new();
    let _ = stream.read_to_string(&mut raw);
    assert!(
        raw.starts_with("HTTP/1.1 401")
            && raw
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
        "{raw}"
    );
    let (status, body) = predict("Authorization: Bearer correct horse\r\n");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["model_sha256"], expected_hash.as_str());
    for open in ["/", "/healthz", "/openapi.json"] {
        assert_eq!(
            http(addr, &format!("GET {open} HTTP/1.1"), b"").0,
            200,
            "{open}"
        );
    }
    let (_, health) = http(addr, "GET /healthz HTTP/1.1", b"");
    let health = json(&health);
    assert_eq!(health["model_sha256"], expected_hash.as_str());
    assert_eq!(health["token_required"], true);

    let config = |addr: &str, token: Option<&str>| tumornet::server::ServerConfig {
        run: run.clone(),
        seg: None,
        addr: addr.parse().expect("addr"),
        max_body: 1 << 20,
        concurrency: 1,
        timeout: Duration::from_secs(5),
        header_timeout: Duration::from_secs(2),
        method: tumornet::cam::CamMethod::GradCam,
        image_weight: 0.5,
        token: token.map(str::to_string),
        allow_unauthenticated: false,
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let refused = runtime.block_on(tumornet::server::serve(config("0.0.0.0:0", None)));
    assert!(
        matches!(refused, Err(tumornet::server::ServerError::Unprotected(_))),
        "{refused:?}"
    );
    assert!(refused
        .expect_err("refused")
        .to_string()
        .contains("--token"));
    assert!(matches!(
        tumornet::server::router(&config("127.0.0.1:0", Some(""))),
        Err(tumornet::server::ServerError::EmptyToken)
    ));
}

/// A DICOM upload carrying patient identifiers: they appear nowhere in the answer nor in the server's log (at the
/// most verbose level), and nothing is written to the temporary folder.
#[test]
fn patient_identifiers_and_uploads_stay_out_of_answers_logs_and_disk() {
    use std::io::BufRead;
    let dir = temp_dir();
    let run = import_formula_run(dir.path());
    let dicom_path = fixtures().join("medical/MR_small.dcm");
    let object = dicom_object::open_file(&dicom_path).expect("dicom");
    let identifiers: Vec<String> = ["PatientName", "PatientID", "PatientBirthDate"]
        .iter()
        .filter_map(|tag| object.element_by_name(tag).ok())
        .filter_map(|e| e.to_str().ok().map(|s| s.trim().to_string()))
        .filter(|s| s.len() >= 3)
        .collect();
    assert!(identifiers.len() >= 2, "{identifiers:?}");
    let scratch = dir.path().join("tmp");
    std::fs::create_dir_all(&scratch).expect("tmp");
    let mut child = crate::common::tumornet()
        .args(["serve", "--addr", "127.0.0.1:0"])
        .arg(&run)
        .env("RUST_LOG", "trace")
        .env("TMPDIR", &scratch)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("serve");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut log = String::new();
    let addr: SocketAddr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).expect("log") > 0,
            "server ended: {log}"
        );
        log.push_str(&line);
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split('/').next().expect("addr").parse().expect("addr");
        }
    };
    let bytes = std::fs::read(&dicom_path).expect("read");
    let (status, body) = http(
        addr,
        "POST /api/predict?name=upload.dcm HTTP/1.1\r\nContent-Type: application/dicom",
        &bytes,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, _) = http(
        addr,
        "POST /api/predict?name=broken.dcm HTTP/1.1\r\nContent-Type: application/dicom",
        &bytes[..bytes.len() * 2 / 3],
    );
    assert_eq!(status, 400);
    let _ = child.kill();
    let _ = child.wait();
    let mut rest = String::new();
    let _ = stderr.read_to_string(&mut rest);
    log.push_str(&rest);
    let answer = String::from_utf8_lossy(&body);
    for identifier in &identifiers {
        assert!(
            !answer.contains(identifier.as_str()),
            "{identifier} in the answer"
        );
        assert!(
            !log.contains(identifier.as_str()),
            "{identifier} in the log"
        );
    }
    assert_eq!(
        std::fs::read_dir(&scratch).expect("tmp").count(),
        0,
        "something was written to the temporary folder"
    );
}
