-- Every on-behalf-of token a portal relayed, by its issuer and jti, kept
-- until the token expires (SPEC section 8): a jti is accepted once, on
-- whichever replica sees it first. The sweeper deletes rows past expiry.
CREATE TABLE token_uses (
  issuer      text NOT NULL,
  jti         text NOT NULL,
  expire_time bigint NOT NULL,
  use_time    bigint NOT NULL,
  PRIMARY KEY (issuer, jti)
);
CREATE INDEX token_uses_expire_time ON token_uses (expire_time);
