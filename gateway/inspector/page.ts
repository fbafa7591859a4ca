// The inspector page as the gateway serves it: a Bun HTML import, which bundles app.ts and the
// stylesheet (from source, and into the compiled binary) and serves them beside the page.
export { default as inspectorPage } from "./index.html";
