// Pins the Gateway API release whose standard-channel CRDs
// (config/crd/standard in the module) the e2e tests install: `go mod download -json
// sigs.k8s.io/gateway-api` here prints the module's directory. Not a build: nothing
// imports it. Kept outside tests/cluster/tools/ (the cluster binary cache key hashes
// those go.mod files).
module capstan.dev/tests/e2e/gateway-api

go 1.26

require sigs.k8s.io/gateway-api v1.4.1
