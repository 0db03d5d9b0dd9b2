from azure.storage.blob import BlobServiceClient


def test_azurite_accepts_current_blob_sdk(storage_connection_string, stereo_clip):
    svc = BlobServiceClient.from_connection_string(storage_connection_string)
    container = svc.get_container_client("smoke")
    container.create_container()
    container.upload_blob("a b/clip.mp4", stereo_clip.read_bytes())
    props = container.get_blob_client("a b/clip.mp4").get_blob_properties()
    assert props.size == stereo_clip.stat().st_size
    assert props.etag
