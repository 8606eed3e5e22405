// The API reference page: Swagger UI on the OpenAPI document embedded in the page (no inline script: CSP).
document.addEventListener("DOMContentLoaded", function () {
  var source = document.getElementById("openapi-document");
  if (!source || typeof SwaggerUIBundle === "undefined") { return; }
  SwaggerUIBundle({
    spec: JSON.parse(source.textContent),
    dom_id: "#swagger-ui",
    deepLinking: false,  // its links inside each operation's button are nested controls (axe: nested-interactive)
    persistAuthorization: false,
    withCredentials: false,
    validatorUrl: null  // no badge fetched from validator.swagger.io: nothing leaves the app
  });
});
