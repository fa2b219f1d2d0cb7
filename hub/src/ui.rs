//! The web console: the files `hub/ui` builds, embedded at compile time (see `build.rs`) and
//! served at `/` (the page) and `/assets/` (scripts, styles), and Swagger UI over the API's
//! OpenAPI document at `/docs`, so the hub needs nothing beside its binary and works on an
//! air-gapped network.
use std::path::PathBuf;

use rocket::http::{ContentType, Header};
use rocket::response::Responder;
use rocket::Route;

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

pub fn routes() -> Vec<Route> {
    rocket::routes![index, asset, docs, docs_file]
}

fn find(name: &str) -> Option<&'static [u8]> {
    ASSETS.iter().find(|(n, _)| *n == name).map(|(_, bytes)| *bytes)
}

/// Only the console's own origin: scripts, styles, API and WebSockets; nothing from elsewhere.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

#[derive(Debug, Responder)]
pub struct Asset {
    body: &'static [u8],
    kind: ContentType,
    cache: Header<'static>,
    csp: Header<'static>,
    nosniff: Header<'static>,
}

fn respond(body: &'static [u8], kind: ContentType, cache: &'static str) -> Asset {
    Asset {
        body,
        kind,
        cache: Header::new("Cache-Control", cache),
        csp: Header::new("Content-Security-Policy", CSP),
        nosniff: Header::new("X-Content-Type-Options", "nosniff"),
    }
}

#[rocket::get("/")]
fn index() -> Option<Asset> {
    // Asset names change with their content; the page that names them must not be cached.
    find("index.html").map(|b| respond(b, ContentType::HTML, "no-cache"))
}

#[rocket::get("/assets/<file..>")]
fn asset(file: PathBuf) -> Option<Asset> {
    let name = format!("assets/{}", file.to_str()?);
    let body = find(&name)?;
    let kind = file
        .extension()
        .and_then(|e| e.to_str())
        .and_then(ContentType::from_extension)
        .unwrap_or(ContentType::Binary);
    Some(respond(body, kind, "public, max-age=31536000, immutable"))
}

#[rocket::get("/docs")]
fn docs() -> Option<Asset> {
    find("docs/index.html").map(|b| respond(b, ContentType::HTML, "no-cache"))
}

#[rocket::get("/docs/<file..>")]
fn docs_file(file: PathBuf) -> Option<Asset> {
    let name = format!("docs/{}", file.to_str()?);
    let body = find(&name)?;
    let kind = file
        .extension()
        .and_then(|e| e.to_str())
        .and_then(ContentType::from_extension)
        .unwrap_or(ContentType::Plain);
    // Not content-hashed: revalidate, so an upgraded hub serves its own Swagger UI.
    Some(respond(body, kind, "no-cache"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_console_is_embedded() {
        let page = std::str::from_utf8(find("index.html").expect("index.html embedded")).expect("utf-8");
        // Every script and stylesheet the page names is embedded too.
        let named: Vec<&str> = page.split('"').filter(|s| s.starts_with("/assets/")).collect();
        assert!(!named.is_empty(), "index.html names its scripts under /assets/");
        for n in named {
            assert!(find(&n[1..]).is_some(), "{n} is not embedded");
        }
    }
}
