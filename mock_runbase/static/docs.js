// The API docs page: Swagger UI (from the swagger-ui-bundle-v2 Python package, served by the
// mock itself) over both documents: Runbase's API and the mock's own. Its top bar switches
// between them (?doc=mock opens the mock's). Nothing is fetched from anywhere but this mock.
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const documents = [
    { url: "/docs/openapi.json", name: "Runbase API (openapi.yaml)" },
    { url: "/docs/mock-openapi.json", name: "mock-runbase's own API (mock-openapi.yaml)" },
  ];
  window.ui = SwaggerUIBundle({
    urls: documents,
    "urls.primaryName": documents[params.get("doc") === "mock" ? 1 : 0].name,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null, // Swagger UI would otherwise ask an online validator about the spec
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout",
    requestInterceptor: (request) => {
      // "Try it out" on /_mock calls: send the admin token given as ?token= on this page.
      const path = new URL(request.url, location.href).pathname;
      if (token && path.startsWith("/_mock")) request.headers["X-Mock-Admin-Token"] = token;
      return request;
    },
  });
})();
