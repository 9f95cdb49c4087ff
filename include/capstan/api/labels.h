#pragma once

// Names Capstan puts on the objects it owns. They are a contract with clusters
// that already run Capstan: changing one orphans or re-rolls existing objects.
//
//   owned objects (Deployment, Service, HPA, PDB, ControllerRevision)
//     labels      app.kubernetes.io/managed-by=capstan
//                 capstan.dev/release=<release name>
//                 capstan.dev/color=blue|green          (BlueGreen Deployments)
//     annotations capstan.dev/revision=<hash>          (Deployments: template revision)
//   pods (the rendered pod template)
//     labels      capstan.dev/release=<release name>
//                 capstan.dev/revision=<hash>
//                 capstan.dev/color=blue|green          (BlueGreen only)
//   selectors     capstan.dev/release (+ capstan.dev/color for BlueGreen); never the
//                 revision, so a Deployment keeps its selector across revisions.

namespace capstan::api {

inline constexpr char kGroup[] = "capstan.dev";
inline constexpr char kVersion[] = "v1alpha1";
inline constexpr char kApiVersion[] = "capstan.dev/v1alpha1";
inline constexpr char kReleaseKind[] = "Release";

// Label and annotation keys under this prefix are Capstan's; users may not set them
// on pod templates.
inline constexpr char kReservedPrefix[] = "capstan.dev/";

inline constexpr char kLabelManagedBy[] = "app.kubernetes.io/managed-by";
inline constexpr char kManagedByCapstan[] = "capstan";
inline constexpr char kLabelRelease[] = "capstan.dev/release";
inline constexpr char kLabelRevision[] = "capstan.dev/revision";
inline constexpr char kLabelColor[] = "capstan.dev/color";
inline constexpr char kAnnotationRevision[] = "capstan.dev/revision";
// A SecretRotation's restart of a Release: "secret-version.capstan.dev/<secret>" on the
// Release's metadata (secrets::StampAnnotationKey; never its spec, so GitOps sees no
// drift), copied by the Release controller into the pod template, so the restart is a
// revision of its own (policy/restart.h).
inline constexpr char kRestartAnnotationPrefix[] = "secret-version.capstan.dev/";

}  // namespace capstan::api
