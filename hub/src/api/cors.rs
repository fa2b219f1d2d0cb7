//! CORS limited to the configured origins (`cors_origins`); no origin is allowed by default.

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::{Header, Status};
use rocket::{Request, Response};

#[derive(Debug)]
pub struct Cors {
    origins: Vec<String>,
}

impl Cors {
    pub fn new(origins: &[String]) -> Cors {
        Cors {
            origins: origins.to_vec(),
        }
    }
}

#[rocket::async_trait]
impl Fairing for Cors {
    fn info(&self) -> Info {
        Info {
            name: "CORS",
            kind: Kind::Response,
        }
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let Some(origin) = req.headers().get_one("Origin") else {
            return;
        };
        if !self.origins.iter().any(|o| o == origin) {
            return;
        }
        res.set_header(Header::new("Access-Control-Allow-Origin", origin.to_string()));
        res.set_header(Header::new("Access-Control-Allow-Credentials", "true"));
        res.set_header(Header::new(
            "Access-Control-Allow-Methods",
            "GET, POST, PUT, PATCH, DELETE, OPTIONS",
        ));
        res.set_header(Header::new(
            "Access-Control-Allow-Headers",
            "Authorization, Content-Type",
        ));
        res.set_header(Header::new("Vary", "Origin"));
    }
}

/// Answers preflight requests; the fairing adds the headers when the origin is allowed.
#[rocket::options("/<_path..>")]
pub fn preflight(_path: std::path::PathBuf) -> Status {
    Status::NoContent
}
