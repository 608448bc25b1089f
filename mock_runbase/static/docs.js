// The API docs page: Swagger UI (from the swagger-ui-bundle-v2 Python package, served by the
// mock itself) over this mock's spec. Nothing is fetched from anywhere but this mock.
"use strict";

(() => {
  const token = new URLSearchParams(location.search).get("token");
  window.ui = SwaggerUIBundle({
    url: "/docs/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null, // Swagger UI would otherwise ask an online validator about the spec
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    requestInterceptor: (request) => {
      // "Try it out" on /_mock calls: send the admin token given as ?token= on this page.
      const path = new URL(request.url, location.href).pathname;
      if (token && path.startsWith("/_mock")) request.headers["X-Mock-Admin-Token"] = token;
      return request;
    },
  });
})();
