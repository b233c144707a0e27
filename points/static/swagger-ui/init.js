// Starts Swagger UI on the API docs page; the OpenAPI document's URL is on the container.
window.addEventListener("load", function () {
  var container = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: container.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    // No badge from validator.swagger.io: the page talks to this server only.
    validatorUrl: null,
    persistAuthorization: false,
  });
});
