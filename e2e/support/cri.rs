//! Thin helpers over the CRI v1 ImageService client.

use std::path::PathBuf;
use std::time::Duration;

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::{
    AuthConfig, Image, ImageFilter, ImageFsInfoRequest, ImageSpec, ImageStatusRequest,
    ImageStatusResponse, ListImagesRequest, PullImageRequest, RemoveImageRequest,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::Status;

pub type ImageClient = ImageServiceClient<Channel>;

/// A safety net against a hung daemon; not a timing assertion.
const CALL_LIMIT: Duration = Duration::from_secs(300);

async fn limited<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(CALL_LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not answer within {CALL_LIMIT:?}"))
}

/// A gRPC channel to a CRI server on the unix socket `path` (berthd's or
/// another runtime's).
pub async fn connect_unix(path: PathBuf) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
}

pub fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

/// PullImage; returns `image_ref`.
pub async fn pull(c: &mut ImageClient, image: &str) -> Result<String, Status> {
    pull_with_auth(c, image, None).await
}

/// PullImage with credentials.
pub async fn pull_with_auth(
    c: &mut ImageClient,
    image: &str,
    auth: Option<AuthConfig>,
) -> Result<String, Status> {
    let req = PullImageRequest {
        image: spec(image),
        auth,
        sandbox_config: None,
    };
    limited("PullImage", c.pull_image(req))
        .await
        .map(|r| r.into_inner().image_ref)
}

/// PullImage that must succeed.
pub async fn pull_ok(c: &mut ImageClient, image: &str) -> String {
    pull(c, image)
        .await
        .unwrap_or_else(|e| panic!("pull {image}: {e:?}"))
}

/// ListImages without a filter.
pub async fn list(c: &mut ImageClient) -> Vec<Image> {
    let req = ListImagesRequest { filter: None };
    limited("ListImages", c.list_images(req))
        .await
        .expect("ListImages")
        .into_inner()
        .images
}

/// ListImages filtered by image reference.
pub async fn list_filtered(c: &mut ImageClient, image: &str) -> Vec<Image> {
    let req = ListImagesRequest {
        filter: Some(ImageFilter { image: spec(image) }),
    };
    limited("ListImages", c.list_images(req))
        .await
        .expect("ListImages with filter")
        .into_inner()
        .images
}

/// ImageStatus; `None` when the runtime does not have the image.
pub async fn status(c: &mut ImageClient, image: &str) -> Option<Image> {
    status_full(c, image, false).await.image
}

/// ImageStatus, with `verbose` info when asked.
pub async fn status_full(c: &mut ImageClient, image: &str, verbose: bool) -> ImageStatusResponse {
    let req = ImageStatusRequest {
        image: spec(image),
        verbose,
    };
    limited("ImageStatus", c.image_status(req))
        .await
        .unwrap_or_else(|e| panic!("ImageStatus {image}: {e:?}"))
        .into_inner()
}

/// RemoveImage.
pub async fn remove(c: &mut ImageClient, image: &str) -> Result<(), Status> {
    let req = RemoveImageRequest { image: spec(image) };
    limited("RemoveImage", c.remove_image(req))
        .await
        .map(|_| ())
}

/// ImageFsInfo of the image filesystem: (used bytes, used inodes).
pub async fn fs_usage(c: &mut ImageClient) -> (u64, u64) {
    let resp = limited("ImageFsInfo", c.image_fs_info(ImageFsInfoRequest {}))
        .await
        .expect("ImageFsInfo")
        .into_inner();
    let fs = resp
        .image_filesystems
        .first()
        .expect("ImageFsInfo lists an image filesystem");
    assert!(
        fs.timestamp > 0,
        "ImageFsInfo timestamp must be > 0: {fs:?}"
    );
    let bytes = fs.used_bytes.as_ref().expect("used_bytes").value;
    let inodes = fs.inodes_used.as_ref().expect("inodes_used").value;
    (bytes, inodes)
}

/// The listed image with id `id`, if any.
pub fn by_id<'a>(images: &'a [Image], id: &str) -> Option<&'a Image> {
    images.iter().find(|i| i.id == id)
}
