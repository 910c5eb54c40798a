// wordtally's API reference (/api-docs/): Swagger UI rendering /api/openapi.json.
// Served from our own origin so the strict Content-Security-Policy (script-src 'self')
// holds: no inline script, no CDN. Swagger UI's files come from the binary (see
// src/http/openapi.rs).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    // The document's own layout, without the "explore another URL" bar.
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
  });
});
