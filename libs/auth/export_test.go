package auth

// RulesIn exposes rulesIn to the tests.
var RulesIn = rulesIn
