//! The file commands as the window calls them, on Tauri's mock runtime: a pasted file's raw
//! body and its name header, the per-file limit checked before anything is queued, previews
//! pulled by id as raw bytes, and what each says without a room. (Sending and receiving
//! through a real room is the desktop end-to-end test's: tests/desktop/run.mjs.)

mod support;

use serde_json::{json, Value};
use support::mock_app as app;
use tauri::ipc::{CallbackFn, InvokeBody, InvokeResponseBody};
use tauri::test::{get_ipc_response, MockRuntime, INVOKE_KEY};
use tauri::webview::InvokeRequest;
use tauri::{Manager, WebviewWindow};
use tertulia_app_lib::files::{MAX_PASTE_BYTES, PASTE_NAME_HEADER};
use tertulia_app_lib::preview::{check_image, Preview, Previews};

fn call(
    window: &WebviewWindow<MockRuntime>,
    cmd: &str,
    body: InvokeBody,
    name: Option<&str>,
) -> Result<InvokeResponseBody, Value> {
    let mut headers = tauri::http::HeaderMap::new();
    if let Some(name) = name {
        headers.insert(PASTE_NAME_HEADER, name.parse().expect("an ASCII header"));
    }
    get_ipc_response(
        window,
        InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            url: "tauri://localhost".parse().expect("url"),
            body,
            headers,
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
}

fn kind(result: Result<InvokeResponseBody, Value>) -> String {
    let error = result.expect_err("the command is refused");
    error["kind"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_paste_over_the_per_file_limit_is_refused_before_anything_is_sent() {
    let (_app, window) = app();
    let big = vec![0u8; MAX_PASTE_BYTES + 1];
    let refused =
        call(&window, "paste_file", InvokeBody::Raw(big), Some("big.png")).expect_err("too large");
    assert_eq!(refused["kind"], "file_too_large", "{refused}");
    assert_eq!(refused["max_bytes"], json!(MAX_PASTE_BYTES));
    assert_eq!(
        kind(call(
            &window,
            "paste_file",
            InvokeBody::Raw(Vec::new()),
            Some("x.png")
        )),
        "invalid",
        "an empty paste"
    );
    assert_eq!(
        kind(call(
            &window,
            "paste_file",
            InvokeBody::Json(json!({ "bytes": [1, 2, 3] })),
            Some("x.png")
        )),
        "invalid",
        "the bytes come as a raw body, not JSON"
    );
    assert_eq!(
        kind(call(
            &window,
            "paste_file",
            InvokeBody::Raw(b"\x89PNG\r\n\x1a\n".to_vec()),
            Some("foto%20de%20ana.png")
        )),
        "not_connected",
        "a good paste without a room"
    );
}

#[test]
fn without_a_room_file_commands_say_so_or_do_nothing() {
    let (_app, window) = app();
    let json_call = |cmd: &str, args: Value| call(&window, cmd, InvokeBody::Json(args), None);
    assert_eq!(
        kind(json_call(
            "save_file",
            json!({ "fileId": 7, "name": "a.pdf" })
        )),
        "not_connected"
    );
    assert_eq!(kind(json_call("attach_files", json!({}))), "not_connected");
    assert!(json_call("cancel_upload", json!({ "uploadId": 1 })).is_ok());
    assert!(json_call("cancel_download", json!({ "fileId": 1 })).is_ok());
}

/// A real PNG, encoded here.
fn png() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(3, 2, image::Rgb([9, 99, 199])))
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode");
    out.into_inner()
}

#[test]
fn a_kept_preview_is_pulled_by_id_as_raw_bytes_and_an_unknown_one_is_refused() {
    let (app, window) = app();
    let bytes = png();
    let image = check_image(&bytes).expect("a real PNG");
    // A random file id above 2^53, as the window has it: text.
    let id = 0x42f6_8bb9_7ec2_ea1a_u64;
    assert!(app
        .state::<Previews>()
        .insert(
            id,
            Preview {
                bytes: bytes.clone().into(),
                image
            }
        )
        .is_empty());
    match call(
        &window,
        "preview",
        InvokeBody::Json(json!({ "fileId": id.to_string() })),
        None,
    ) {
        Ok(InvokeResponseBody::Raw(raw)) => assert_eq!(raw, bytes, "the exact bytes, raw"),
        other => panic!("expected raw bytes, got {other:?}"),
    }
    assert_eq!(
        kind(call(
            &window,
            "preview",
            InvokeBody::Json(json!({ "fileId": 43 })),
            None
        )),
        "invalid"
    );
    assert!(
        call(
            &window,
            "preview",
            InvokeBody::Json(json!({ "fileId": "4.8e18" })),
            None
        )
        .is_err(),
        "a file id is a decimal number"
    );
}
