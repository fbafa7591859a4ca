// nginx as the upstream service (a 1 KiB file, a 64 KiB file, a 64 MiB file and an upload sink) and as the
// reverse-proxy row. Each instance has one worker: the tunnel's gateway and agent are one
// event loop each, and two cores are shared by everything in the bench.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Children, freePort, waitForPort } from "./procs.ts";

export const SMALL_PATH = "/1k";
/** As large as the inspector keeps of a body by default, so that it copies all of it. */
export const MEDIUM_PATH = "/64k";
export const LARGE_PATH = "/64m";
export const UPLOAD_PATH = "/upload";
export const SMALL_BYTES = 1024;
export const MEDIUM_BYTES = 64 * 1024;
export const LARGE_BYTES = 64 * 1024 * 1024;

const NGINX = "/usr/sbin/nginx";

/** Creates the files the upstream serves; the 64 MiB file doubles as the upload body. */
export async function writeContent(dir: string): Promise<{ root: string; largeFile: string }> {
  const root = join(dir, "www");
  mkdirSync(root, { recursive: true });
  // Random bytes: nothing on any path can compress them.
  writeFileSync(join(root, SMALL_PATH.slice(1)), crypto.getRandomValues(new Uint8Array(SMALL_BYTES)));
  writeFileSync(join(root, MEDIUM_PATH.slice(1)), crypto.getRandomValues(new Uint8Array(MEDIUM_BYTES)));
  const large = new Uint8Array(LARGE_BYTES);
  for (let offset = 0; offset < LARGE_BYTES; offset += 65536) {
    crypto.getRandomValues(large.subarray(offset, offset + 65536));
  }
  const largeFile = join(root, LARGE_PATH.slice(1));
  await Bun.write(largeFile, large);
  // The static handler answers POST to an existing file with 405, which the sink turns into 200.
  writeFileSync(join(root, UPLOAD_PATH.slice(1)), "");
  return { root, largeFile };
}

// The upload sink uses nginx alone: the mirror module with mirror_request_body reads the whole
// body into memory before the content phase (so the answer comes only after the last byte, as
// with a real upload handler), the mirror subrequest itself does nothing, and the static
// handler's 405 for POST becomes a 200.
function upstreamServer(port: number, root: string): string {
  return `
  server {
    listen 127.0.0.1:${port};
    root ${root};
    client_max_body_size 0;
    location = ${UPLOAD_PATH} {
      client_body_buffer_size 80m;
      mirror /_uploaded;
      mirror_request_body on;
      error_page 405 = @uploaded;
    }
    location = /_uploaded { internal; return 204; }
    location @uploaded { return 200 "ok\\n"; }
  }`;
}

// A usual keep-alive reverse proxy. Bodies stream both ways (no spooling to disk), as they do
// through the tunnel.
function proxyServer(port: number, upstreamPort: number): string {
  return `
  upstream origin {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${port};
    client_max_body_size 0;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_request_buffering off;
      proxy_buffering on;
      proxy_buffers 16 64k;
      proxy_max_temp_file_size 0;
    }
  }`;
}

function config(dir: string, servers: string): string {
  const tmp = join(dir, "tmp");
  mkdirSync(tmp, { recursive: true });
  // Running as root, workers keep root too: the bench's files live in a private temp dir.
  const user = process.getuid?.() === 0 ? "user root root;" : "";
  return `${user}
worker_processes 1;
daemon off;
pid ${join(dir, "nginx.pid")};
error_log ${join(dir, "error.log")} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${tmp}/body;
  proxy_temp_path ${tmp}/proxy;
  fastcgi_temp_path ${tmp}/fastcgi;
  uwsgi_temp_path ${tmp}/uwsgi;
  scgi_temp_path ${tmp}/scgi;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 120s;
  keepalive_requests 10000000;
  default_type application/octet-stream;
${servers}
}
`;
}

async function startNginx(children: Children, name: string, dir: string, servers: string, port: number) {
  mkdirSync(dir, { recursive: true });
  const confFile = join(dir, "nginx.conf");
  writeFileSync(confFile, config(dir, servers));
  const child = children.spawn(name, [NGINX, "-p", dir, "-e", join(dir, "error.log"), "-c", confFile]);
  await waitForPort(port, child);
  return child;
}

export async function startUpstream(children: Children, dir: string, root: string): Promise<number> {
  const port = freePort();
  await startNginx(children, "nginx upstream", join(dir, "nginx-upstream"), upstreamServer(port, root), port);
  return port;
}

export async function startProxy(children: Children, dir: string, upstreamPort: number): Promise<number> {
  const port = freePort();
  await startNginx(children, "nginx proxy", join(dir, "nginx-proxy"), proxyServer(port, upstreamPort), port);
  return port;
}
