#pragma once

// The SecretRotation API (api/secret_rotation.h: the types, their parser and validator;
// api/cron.h: spec.schedule) under the names the secrets layer decides with. The
// definitions live in api/, beside Release and Environment, and are read with the same
// JSON readers; this header only names them in capstan::secrets.

#include "capstan/api/cron.h"
#include "capstan/api/secret_rotation.h"

namespace capstan::secrets {

using api::CharClass;
using api::ClassCharacters;
using api::ConsumerMode;
using api::CronSchedule;
using api::DbStrategy;
using api::FailureAction;
using api::FormatGoDuration;
using api::HookTarget;
using api::IsReservedDataKey;
using api::JwksDataKey;
using api::KeyPairGenerator;
using api::KeyPairType;
using api::KeySpec;
using api::kSecretRotationKind;
using api::NextCronTime;
using api::ParseCron;
using api::ParseGoDuration;
using api::ParseSecretRotation;
using api::PasswordGenerator;
using api::PendingKey;
using api::PostgresTarget;
using api::PreviousKey;
using api::PublicKeyDataKey;
using api::RandomBytesGenerator;
using api::RollbackKey;
using api::RotationStrategy;
using api::RotationTrigger;
using api::SecretRotation;
using api::SecretRotationSpec;
using api::UuidGenerator;
using api::ValidateSecretRotation;
using api::ValueEncoding;

}  // namespace capstan::secrets
