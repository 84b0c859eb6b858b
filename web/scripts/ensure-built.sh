#!/usr/bin/env bash
# Builds the console into web/dist when its sources changed since the last build; meant for
# scripts/bootstrap.sh (`make up`). Without Node 20.19+ and npm it says so and exits 0: the
# platform API then serves its placeholder page at / and everything else works.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'cove: %s\n' "$*" >&2; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  say "Node.js/npm not found: the admin console is not built (install Node 20.19+ and npm)"
  exit 0
fi
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  say "Node $(node --version) is too old for the admin console (needs 20.19+): not built"
  exit 0
fi

stamp=node_modules/.cove-console-build
digest=$(
  {
    cat package.json package-lock.json index.html vite.config.ts tsconfig*.json
    find src public -type f -print0 | sort -z | xargs -0 cat
  } | sha256sum | cut -d' ' -f1
)
if [[ -f dist/index.html && -f "$stamp" && "$(cat "$stamp")" == "$digest" ]]; then
  exit 0
fi
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  say "installing the admin console's npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
say "building the admin console into web/dist"
npm run build --silent >&2
echo "$digest" >"$stamp"
