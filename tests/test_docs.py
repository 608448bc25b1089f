"""``/docs`` (Swagger UI over both documents) and where each document is served."""

from __future__ import annotations

import re

import yaml

from mock_runbase.control_spec import default_control_path, load_control_spec
from mock_runbase.docs import swagger_ui_dir
from mock_runbase.spec import default_spec_path, load_spec
from tests.conftest import Mock, MockFactory
from tests.test_app import error_of


def test_docs_page_loads_swagger_ui_from_this_server_only(mock: Mock) -> None:
    page = mock.client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    sources = re.findall(r"(?:src|href)=\"([^\"]+)\"", page.text)
    assert sorted(sources) == [
        "/docs/assets/docs.js",
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui-standalone-preset.js",
        "/docs/assets/swagger-ui.css",
        "data:,",
    ]
    for source in [s for s in sources if s.startswith("/")]:
        asset = mock.client.get(source)
        assert asset.status_code == 200, source
        kind = "text/css" if source.endswith(".css") else "text/javascript"
        assert asset.headers["content-type"].startswith(kind)
    script = mock.client.get("/docs/assets/docs.js").text
    assert "validatorUrl: null" in script  # Swagger UI would otherwise call an online validator
    # The selector offers both documents, each served by this mock.
    offered = re.findall(r'url: "(/docs/[^"]+)"', script)
    assert offered == ["/docs/openapi.json", "/docs/mock-openapi.json"]
    for url in offered:
        assert mock.client.get(url).status_code == 200, url


def test_docs_assets_are_swagger_ui_5_from_the_installed_package(mock: Mock) -> None:
    directory = swagger_ui_dir()
    assert int(directory.name.removeprefix("swagger-ui-").split(".")[0]) >= 5  # reads 3.1
    served = mock.client.get("/docs/assets/swagger-ui-bundle.js").content
    assert served == (directory / "swagger-ui-bundle.js").read_bytes()
    assert error_of(mock.client.get("/docs/assets/nope.js")) == (404, "not_found")
    assert error_of(mock.client.get("/docs/nope.json")) == (404, "not_found")


def test_docs_runbase_document_names_this_mock_first(mock: Mock) -> None:
    document = mock.client.get("/docs/openapi.json").json()
    assert document["paths"].keys() == load_spec().document["paths"].keys()
    assert [s["url"] for s in document["servers"]] == [
        "http://mock.test/v1",
        "http://mock.test/api/v1",
        "https://api.runbase.net/v1",
        "https://runbase.net/api/v1",
    ]


def test_docs_mock_document_is_bundled_and_names_this_mock(mock: Mock) -> None:
    document = mock.client.get("/docs/mock-openapi.json").json()
    assert [s["url"] for s in document["servers"]] == ["http://mock.test"]
    assert "openapi.yaml#" not in str(document)
    assert document["paths"].keys() == load_control_spec().document["paths"].keys()


def test_each_document_is_served_where_its_own_document_says(mock: Mock) -> None:
    runbase = mock.client.get("/openapi.yaml")
    assert runbase.headers["content-type"].startswith("application/yaml")
    assert runbase.content == default_spec_path().read_bytes()
    control_yaml = mock.client.get("/_mock/openapi.yaml")
    assert control_yaml.headers["content-type"].startswith("application/yaml")
    control_json = mock.client.get("/_mock/openapi.json")
    assert control_json.headers["content-type"] == "application/json"
    assert yaml.safe_load(control_yaml.text) == control_json.json()
    served = control_json.json()
    for path in ("/openapi.yaml", "/_mock/openapi.yaml", "/_mock/openapi.json", "/docs"):
        assert path in served["paths"], path


def test_the_mock_document_is_guarded_by_the_admin_token(make_mock: MockFactory) -> None:
    mock = make_mock(admin_token="s3cret")
    assert error_of(mock.client.get("/_mock/openapi.yaml")) == (401, "admin_token_required")
    guarded = mock.client.get("/_mock/openapi.json", headers={"X-Mock-Admin-Token": "s3cret"})
    assert guarded.status_code == 200
    # The docs page's copies are not behind it: a document is no secret, and a browser
    # opening /docs cannot send a header.
    assert mock.client.get("/docs/mock-openapi.json").status_code == 200


def test_nothing_of_the_mocks_own_is_in_runbases_document() -> None:
    runbase = yaml.safe_load(default_spec_path().read_text())
    assert set(runbase["paths"]) == {"/runs", "/runs/{id}"}
    text = default_spec_path().read_text()
    for own in ("/_mock", "/files/generated/{", "/healthz", "localhost", "x-runbase-source: mock"):
        assert own not in text, own
    assert not [name for name in runbase["components"]["schemas"] if name.startswith("Mock")]


def test_the_mock_document_refers_to_shared_schemas_instead_of_copying_them() -> None:
    source = yaml.safe_load(default_control_path().read_text())
    shared = set(yaml.safe_load(default_spec_path().read_text())["components"]["schemas"])
    own = set(source["components"]["schemas"])
    assert not own & shared, f"copied from openapi.yaml: {sorted(own & shared)}"
    assert "openapi.yaml#/components/schemas/Error" in default_control_path().read_text()
