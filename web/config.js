// Where the gallery finds the upload API, and the token it sends.
// Locally, the server that serves this page answers under /api and takes any bearer token as its
// development user. Deployed, set apiBase to the stack's ApiUrl output (or open the page with ?api=<url>),
// leave authToken empty, and let the JWT issuer's sign-in page hand the token back in the URL fragment
// (#id_token=... or #access_token=...).
window.ATELIER_CONFIG = {
  apiBase: "/api",
  authToken: "local-dev",
};
