// The processes under test. Each runs on its own (spawned), so that the load generator never
// shares its thread and its CPU time and peak RSS can be read from /proc.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, processTree, registerTempDir, startChild, waitForPort, type Child } from './proc.js';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SERVERS = fileURLToPath(new URL('../servers/', import.meta.url));

export type TargetId =
  | 'direct'
  | 'bare'
  | 'minimal'
  | 'minimal-engine'
  | 'coatcheck-memory'
  | 'coatcheck-redis'
  | 'nginx'
  | 'nginx-lua'
  // Only in the scale-out run (bench/scale-out.ts):
  | 'coatcheck-redis-2w'
  | 'coatcheck-cluster';

/** The targets of the main run (bench/run.ts), in its order. */
export const MAIN_TARGETS: readonly TargetId[] = ['direct', 'bare', 'minimal-engine', 'minimal', 'coatcheck-memory', 'coatcheck-redis', 'nginx', 'nginx-lua'];

/**
 * THE reference of the bench: the minimal session proxy on coatcheck's own forwarding engine
 * (one ioredis GET per request, the jar as JSON). Every `÷ ref` ratio divides by it.
 */
export const REFERENCE: TargetId = 'minimal-engine';

export const TARGET_LABELS: Record<TargetId, string> = {
  direct: 'direct (no proxy)',
  bare: 'bare forwarder (undici)',
  'minimal-engine': 'minimal reference (engine)',
  minimal: 'minimal ref., request()+pipeline()',
  'coatcheck-memory': 'coatcheck (memory)',
  'coatcheck-redis': 'coatcheck (Redis)',
  nginx: 'nginx proxy_pass',
  'nginx-lua': 'nginx + lua + Redis',
  'coatcheck-redis-2w': 'coatcheck (Redis), 2 workers',
  'coatcheck-cluster': 'coatcheck (3-master cluster)',
};

export interface Target {
  readonly id: TargetId;
  readonly origin: string;
  /** The proxy's process and its descendants; empty for `direct`. */
  pids(): number[];
  readonly usesRedis: boolean;
  /** The last lines the proxy printed (its warnings and errors), when it is a process of ours. */
  tail?(): string;
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 15_000;

function readyPort(line: string): number | undefined {
  try {
    const o = JSON.parse(line) as { event?: string; port?: number };
    return o.event === 'ready' && typeof o.port === 'number' ? o.port : undefined;
  } catch {
    return undefined;
  }
}

/** A bench server of ours (upstream, bare forwarder, minimal reference). */
async function startNodeServer(
  name: string,
  script: string,
  args: string[],
  role: 'proxy' | 'rest',
  nodeArgs: string[] = [],
): Promise<{ child: Child; port: number }> {
  const child = startChild(name, process.execPath, [...nodeArgs, join(SERVERS, script), ...args], { cwd: REPO_ROOT, role });
  const port = await child.waitLine(readyPort, READY_TIMEOUT_MS);
  return { child, port };
}

export interface Upstream {
  readonly origin: string;
  readonly child: Child;
  stop(): Promise<void>;
}

export async function startUpstream(): Promise<Upstream> {
  const { child, port } = await startNodeServer('upstream', 'upstream.js', [], 'rest');
  return { origin: `http://127.0.0.1:${port}`, child, stop: () => child.stop() };
}

/** The WebSocket bench's app (servers/ws-upstream.ts): a login, a logout, a WebSocket echo. */
export async function startWsUpstream(): Promise<Upstream> {
  const { child, port } = await startNodeServer('ws upstream', 'ws-upstream.js', [], 'rest');
  return { origin: `http://127.0.0.1:${port}`, child, stop: () => child.stop() };
}

export function directTarget(upstream: Upstream): Target {
  return { id: 'direct', origin: upstream.origin, pids: () => [], usesRedis: false, stop: async () => undefined };
}

export async function startBare(upstream: Upstream, nodeArgs: string[] = []): Promise<Target> {
  const { child, port } = await startNodeServer('bare forwarder', 'bare-forwarder.js', [upstream.origin], 'proxy', nodeArgs);
  return { id: 'bare', origin: `http://127.0.0.1:${port}`, pids: () => [child.pid], usesRedis: false, stop: () => child.stop() };
}

/**
 * The minimal reference: with `engine: 'coatcheck'` (target `minimal-engine`, THE reference)
 * it forwards through coatcheck's own engine (src/proxy/engine.ts), so that coatcheck's ratio
 * to it is what the session features alone cost; with `request` (target `minimal`, a second
 * line) through undici's `request()` and `stream.pipeline()`. `nodeArgs` go before the script
 * (e.g. --cpu-prof).
 */
export async function startMinimal(
  upstream: Upstream,
  redisUrl: string,
  engine: 'request' | 'coatcheck' = 'request',
  nodeArgs: string[] = [],
): Promise<Target> {
  const name = engine === 'request' ? 'minimal reference (request)' : 'minimal reference (engine)';
  const { child, port } = await startNodeServer(name, 'minimal-proxy.js', [upstream.origin, redisUrl, engine], 'proxy', nodeArgs);
  const id: TargetId = engine === 'request' ? 'minimal' : 'minimal-engine';
  return { id, origin: `http://127.0.0.1:${port}`, pids: () => [child.pid], usesRedis: true, stop: () => child.stop() };
}

export const COATCHECK_SECRET = randomBytes(36).toString('base64url');
export const COATCHECK_PREFIX = 'coatcheck:';

export type BenchStore =
  | { kind: 'memory' }
  | { kind: 'redis'; url: string; /** store.timeout; default 250ms, as in production. */ timeout?: string }
  /** A Redis Cluster: its masters' "host:port". */
  | { kind: 'cluster'; nodes: readonly string[]; timeout?: string };

function storeYaml(store: BenchStore): string {
  switch (store.kind) {
    case 'memory':
      return 'store:\n  kind: memory\n';
    case 'redis':
      return `store:\n  kind: redis\n  url: "${store.url}"\n  prefix: "${COATCHECK_PREFIX}"\n  timeout: ${store.timeout ?? '250ms'}\n`;
    case 'cluster':
      return `store:\n  kind: redis\n  cluster:\n    nodes: [${store.nodes.map((n) => `"${n}"`).join(', ')}]\n  prefix: "${COATCHECK_PREFIX}"\n  timeout: ${store.timeout ?? '250ms'}\n`;
  }
}

/** coatcheck's configuration for the bench: a realistic one, minus per-request access logs. */
export function coatcheckConfig(upstreamOrigin: string, port: number, store: BenchStore, workers = 1): string {
  return `# generated by bench/run.ts
listen: "127.0.0.1:${port}"
upstream: "${upstreamOrigin}"
workers: ${workers}
${storeYaml(store)}secrets:
  - "${COATCHECK_SECRET}"
cookie:
  name: coatcheck
  secure: false
  sameSite: lax
session:
  idleTimeout: 30m
  absoluteTimeout: 12h
  managed: "*"
  passthrough: ["_ga*"]
logout:
  - path: /logout
    methods: [GET, POST]
login:
  - path: /login
    methods: [POST]
invalidSession:
  revoked: reject
  expired: anonymous
log:
  level: warn
  access: false
`;
}

/**
 * coatcheck itself: `node dist/cli.js --config <generated yaml>`. With log level warn its
 * "listening" line is not printed, so the bench picks the port and waits until it accepts.
 * `nodeArgs` go before the script (e.g. --cpu-prof).
 */
export async function startCoatcheck(
  upstream: Upstream,
  store: BenchStore,
  nodeArgs: string[] = [],
  /** Processes sharing the listener (the config's `workers`). */
  workers = 1,
): Promise<Target> {
  const dir = registerTempDir(await mkdtemp(join(tmpdir(), 'coatcheck-bench-cc-')));
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const file = join(dir, `coatcheck-${store.kind}.yaml`);
    await writeFile(file, coatcheckConfig(upstream.origin, port, store, workers));
    const id: TargetId =
      store.kind === 'memory' ? 'coatcheck-memory' : store.kind === 'cluster' ? 'coatcheck-cluster' : workers > 1 ? 'coatcheck-redis-2w' : 'coatcheck-redis';
    const child = startChild(id, process.execPath, [...nodeArgs, join(REPO_ROOT, 'dist/cli.js'), '--config', file], { cwd: dir, role: 'proxy' });
    try {
      await waitForPort(port, READY_TIMEOUT_MS, () => child.isRunning());
    } catch (err) {
      lastError = err;
      await child.stop('SIGKILL');
      if (/EADDRINUSE/.test(child.tail())) continue;
      await rm(dir, { recursive: true, force: true });
      throw new Error(`${id} did not start: ${(err as Error).message}\n${child.tail()}`, { cause: err });
    }
    return {
      id,
      origin: `http://127.0.0.1:${port}`,
      // With workers, the primary and its worker processes.
      pids: () => (workers > 1 ? processTree(child.pid) : [child.pid]),
      usesRedis: store.kind !== 'memory',
      tail: () => child.tail(),
      async stop() {
        await child.stop('SIGTERM', 15_000);
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`coatcheck did not start: ${(lastError as Error)?.message}`);
}

/** The `http {}` lines every generated nginx configuration shares (temp paths in `dir`, keep-alive both ways). */
function nginxHttpCommon(dir: string, upstreamHost: string): string {
  return `  access_log off;
  client_body_temp_path ${join(dir, 'body')};
  proxy_temp_path ${join(dir, 'proxy')};
  fastcgi_temp_path ${join(dir, 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'uwsgi')};
  scgi_temp_path ${join(dir, 'scgi')};
  keepalive_requests 1000000;
  keepalive_timeout 65s;
  upstream app {
    server ${upstreamHost};
    keepalive 128;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }`;
}

const NGINX_PROXY = `      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;`;

/**
 * Starts nginx with the configuration `conf(dir, port)` gives (one worker, daemon off, its own
 * prefix `dir`), retrying on a port taken meanwhile.
 */
async function launchNginx(id: 'nginx' | 'nginx-lua', conf: (dir: string, port: number) => string): Promise<Target> {
  const dir = registerTempDir(await mkdtemp(join(tmpdir(), `coatcheck-bench-${id}-`)));
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const file = join(dir, 'nginx.conf');
    await writeFile(file, conf(dir, port));
    const child = startChild(id, 'nginx', ['-p', dir, '-c', file, '-e', 'stderr', '-g', 'daemon off;'], { role: 'proxy' });
    try {
      await waitForPort(port, READY_TIMEOUT_MS, () => child.isRunning());
    } catch (err) {
      lastError = err;
      await child.stop('SIGKILL');
      if (/Address already in use/i.test(child.tail())) continue;
      await rm(dir, { recursive: true, force: true });
      throw new Error(`${id} did not start: ${(err as Error).message}\n${child.tail()}`, { cause: err });
    }
    return {
      id,
      origin: `http://127.0.0.1:${port}`,
      pids: () => processTree(child.pid),
      usesRedis: id === 'nginx-lua',
      tail: () => child.tail(),
      async stop() {
        await child.stop('SIGQUIT', 5000);
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`${id} did not start: ${(lastError as Error)?.message}`);
}

function nginxHead(dir: string, modules: readonly string[] = []): string {
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  return `# generated by bench/lib/targets.ts
${modules.map((m) => `load_module ${m};\n`).join('')}${asRoot ? 'user root;\n' : ''}worker_processes 1;
error_log stderr warn;
pid ${join(dir, 'nginx.pid')};
events { worker_connections 4096; }
`;
}

/** nginx as a plain reverse proxy: one worker (the Node proxies are single-threaded too), keep-alive both ways. */
export async function startNginx(upstream: Upstream): Promise<Target> {
  const upstreamHost = new URL(upstream.origin).host;
  return launchNginx(
    'nginx',
    (dir, port) => `${nginxHead(dir)}http {
${nginxHttpCommon(dir, upstreamHost)}
  server {
    listen 127.0.0.1:${port};
    location / {
${NGINX_PROXY}
    }
  }
}
`,
  );
}

/** What nginx + lua needs, found on this machine, or why it cannot run. */
export type NginxLuaSupport =
  | { ok: true; modules: string[]; luaPath: string; redisModule: string }
  | { ok: false; reason: string };

/**
 * Looks for the lua module (ngx_lua, and the NDK it needs, e.g. Debian's libnginx-mod-http-lua)
 * and lua-resty-redis (Debian's lua-nginx-redis installs it as `nginx.redis`; upstream and
 * OpenResty as `resty.redis`). An nginx built with lua in it (OpenResty) needs no load_module.
 */
export function nginxLuaSupport(nginxV: string): NginxLuaSupport {
  let modules: string[] = [];
  if (!/lua-nginx-module|ngx_lua|ngx_http_lua/.test(nginxV)) {
    const configured = /--modules-path=(\S+)/.exec(nginxV)?.[1];
    const dirs = [...new Set([...(configured ? [configured] : []), '/usr/lib/nginx/modules', '/usr/share/nginx/modules', '/usr/local/nginx/modules'])];
    const dir = dirs.find((d) => existsSync(join(d, 'ngx_http_lua_module.so')));
    if (!dir) return { ok: false, reason: `the nginx lua module (ngx_http_lua_module.so) is not in ${dirs.join(', ')} (Debian: apt-get install libnginx-mod-http-lua)` };
    modules = [...(existsSync(join(dir, 'ndk_http_module.so')) ? [join(dir, 'ndk_http_module.so')] : []), join(dir, 'ngx_http_lua_module.so')];
  }
  const candidates: Array<[string, string]> = [
    ['/usr/share/lua/5.1', 'resty.redis'],
    ['/usr/share/lua/5.1', 'nginx.redis'],
    ['/usr/local/openresty/lualib', 'resty.redis'],
    ['/usr/local/share/lua/5.1', 'resty.redis'],
    ['/usr/local/lib/lua', 'resty.redis'],
  ];
  const found = candidates.find(([base, mod]) => existsSync(join(base, `${mod.replace('.', '/')}.lua`)));
  if (!found) return { ok: false, reason: 'lua-resty-redis (resty/redis.lua) was not found (Debian: apt-get install lua-nginx-redis)' };
  return { ok: true, modules, luaPath: `${found[0]}/?.lua;;`, redisModule: found[1] };
}

/**
 * The reference's logic in nginx + lua (ngx_lua) + lua-resty-redis, one worker: the same
 * minimal session proxy as servers/minimal-proxy.ts, as someone would write it in nginx.
 *   - access_by_lua: read the `mref` ticket cookie, one GET of the JSON jar through a pooled
 *     cosocket connection (set_keepalive, up to 128), the upstream Cookie header replaced by
 *     the jar's name=value pairs (or removed); on /logout, DEL before forwarding;
 *   - proxy_pass to the app (keep-alive, as the plain nginx row);
 *   - header_filter_by_lua: take the app's Set-Cookies out, merge them into the jar and answer
 *     one ticket cookie for a new session (or its clearing on logout).
 * ngx_lua allows no cosocket in a header filter, so the SET of a merged jar goes out from a
 * zero-delay timer right after the headers (the response does not wait for it, as the Node
 * reference's does), and a per-worker table of pending writes makes the session's next
 * request see the new jar even if it arrives before the SET has been answered. The jar's
 * JSON is read with a string pattern: cookie values (RFC 6265 cookie-octets) hold no `"` or `\`.
 */
export async function startNginxLua(upstream: Upstream, redisUrl: string, support: Extract<NginxLuaSupport, { ok: true }>): Promise<Target> {
  const upstreamHost = new URL(upstream.origin).host;
  const redis = new URL(redisUrl);
  const lua = `
    local redis = require "${support.redisModule}"
    local ngx = ngx
    local KEY = "minimal:"
    local HOST, PORT = "${redis.hostname}", ${Number(redis.port) || 6379}
    local pending = {}
    local M = {}
    local function connect()
      local red = redis:new()
      red:set_timeouts(1000, 1000, 1000)
      local ok, err = red:connect(HOST, PORT)
      if not ok then return nil, err end
      return red
    end
    local function release(red) red:set_keepalive(60000, 128) end
    local function decode(json)
      local names, values = {}, {}
      for n, v in json:gmatch('%["([^"]*)","([^"]*)"%]') do
        names[#names + 1] = n
        values[#values + 1] = v
      end
      return names, values
    end
    local function store(sid, json)
      pending[sid] = json
      local ok, err = ngx.timer.at(0, function()
        local red, cerr = connect()
        if red then
          local _, serr = red:set(KEY .. sid, json)
          if serr then ngx.log(ngx.ERR, "redis SET: ", serr) else release(red) end
        else
          ngx.log(ngx.ERR, "redis connect: ", cerr)
        end
        if pending[sid] == json then pending[sid] = nil end
      end)
      if not ok then ngx.log(ngx.ERR, "timer: ", err) end
    end
    local function newsid()
      local b = {}
      for i = 1, 24 do b[i] = string.char(math.random(0, 255)) end
      return ngx.encode_base64(table.concat(b)):gsub("[+/=]", { ["+"] = "-", ["/"] = "_", ["="] = "" })
    end
    function M.seed()
      local f = io.open("/dev/urandom", "rb")
      local s = f and f:read(4) or ""
      if f then f:close() end
      local n = ngx.worker.pid()
      for i = 1, #s do n = n * 256 + s:byte(i) end
      math.randomseed(n % 2147483647)
    end
    function M.access()
      local sid = ngx.var.cookie_mref
      local logout = ngx.var.uri == "/logout"
      local json
      if sid then
        json = pending[sid]
        if json == nil or logout then
          local red, err = connect()
          if not red then ngx.log(ngx.ERR, "redis connect: ", err); return ngx.exit(503) end
          if json == nil then
            local v, gerr = red:get(KEY .. sid)
            if gerr then ngx.log(ngx.ERR, "redis GET: ", gerr); return ngx.exit(503) end
            if v ~= ngx.null then json = v end
          end
          if logout and json then
            local _, derr = red:del(KEY .. sid)
            if derr then ngx.log(ngx.ERR, "redis DEL: ", derr); return ngx.exit(503) end
            pending[sid] = nil
          end
          release(red)
        end
      end
      local ctx = ngx.ctx
      ctx.sid, ctx.json, ctx.logout = sid, json, logout
      if json then
        local names, values = decode(json)
        local parts = {}
        for i = 1, #names do parts[i] = names[i] .. "=" .. values[i] end
        ngx.req.set_header("Cookie", table.concat(parts, "; "))
      else
        ngx.req.clear_header("Cookie")
      end
    end
    function M.header_filter()
      local ctx = ngx.ctx
      local sc = ngx.header["Set-Cookie"]
      if sc == nil then
        if ctx.logout and ctx.sid then ngx.header["Set-Cookie"] = "mref=; Path=/; Max-Age=0" end
        return
      end
      if type(sc) == "string" then sc = { sc } end
      ngx.header["Set-Cookie"] = nil
      local live = ctx.json ~= nil and not ctx.logout
      local names, values = {}, {}
      if live then names, values = decode(ctx.json) end
      local index = {}
      for i = 1, #names do index[names[i]] = i end
      for _, c in ipairs(sc) do
        local pair = c:match("^[^;]*")
        local eq = pair:find("=", 1, true)
        if eq and eq > 1 then
          local name = pair:sub(1, eq - 1):match("^%s*(.-)%s*$")
          local value = pair:sub(eq + 1):match("^%s*(.-)%s*$")
          local i = index[name]
          if value == "" or c:lower():find("max-age=0", 1, true) then
            if i then values[i] = false end
          elseif i then
            values[i] = value
          else
            names[#names + 1] = name
            values[#values + 1] = value
            index[name] = #names
          end
        end
      end
      local items = {}
      for i = 1, #names do
        if values[i] then items[#items + 1] = '["' .. names[i] .. '","' .. values[i] .. '"]' end
      end
      local json = "[" .. table.concat(items, ",") .. "]"
      if live then
        store(ctx.sid, json)
      elseif #items > 0 then
        local sid = newsid()
        store(sid, json)
        ngx.header["Set-Cookie"] = "mref=" .. sid .. "; Path=/; HttpOnly; SameSite=Lax"
      elseif ctx.logout and ctx.sid then
        ngx.header["Set-Cookie"] = "mref=; Path=/; Max-Age=0"
      end
    end
    package.loaded.mref = M
`;
  return launchNginx(
    'nginx-lua',
    (dir, port) => `${nginxHead(dir, support.modules)}http {
${nginxHttpCommon(dir, upstreamHost)}
  lua_package_path "${support.luaPath}";
  lua_socket_log_errors off;
  lua_max_pending_timers 65536;
  lua_max_running_timers 8192;
  init_by_lua_block {${lua}  }
  init_worker_by_lua_block { require("mref").seed() }
  server {
    listen 127.0.0.1:${port};
    location / {
      access_by_lua_block { require("mref").access() }
      header_filter_by_lua_block { require("mref").header_filter() }
${NGINX_PROXY}
    }
  }
}
`,
  );
}
