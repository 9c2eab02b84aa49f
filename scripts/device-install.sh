# Sourced by the device scripts (gpu-check.sh, serving-bench.sh): `. scripts/device-install.sh` defines
#   rf_device_install LOG [PYTHON]
# which installs rocmforge on the device machine without network: the carried wheels (.whl/, made here by
# scripts/fetch-device-wheels.sh) into $RF_SITE (/tmp/site), then put on PYTHONPATH, and this checkout with every
# plugin as editable installs (they give the registry its entry points; --no-build-isolation uses the machine's
# setuptools). Run from the checkout's root; on a pip failure it prints the log's tail and returns 1.
rf_device_install() {
    local log=$1 py=${2:-python3} site=${RF_SITE:-/tmp/site} pkgs
    : >"$log"
    if ls .whl/*.whl >/dev/null 2>&1; then
        "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
            .whl/*.whl >>"$log" 2>&1 || { tail -20 "$log"; return 1; }
        export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
    fi
    pkgs=". $(for d in plugins/*/ plugins/formats/*/; do [ -f "$d/pyproject.toml" ] && printf '%s ' "$d"; done)"
    "$py" -m pip install -q --no-index --no-deps --no-build-isolation \
        $(for p in $pkgs; do printf -- '-e %s ' "$p"; done) >>"$log" 2>&1 || { tail -20 "$log"; return 1; }
}
