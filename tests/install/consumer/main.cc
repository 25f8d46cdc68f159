// consumer TARGET CA CERT KEY: lists the tenants it may see.
#include <lockbox/client.h>

#include <iostream>

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: consumer TARGET CA CERT KEY\n";
    return 2;
  }
  lockbox::Options options;
  options.target = argv[1];
  options.ca_file = argv[2];
  options.cert_file = argv[3];
  options.key_file = argv[4];
  auto client = lockbox::Client::Create(options);
  if (!client.ok()) {
    std::cerr << client.status().error_message() << "\n";
    return 1;
  }
  auto tenants = (*client)->ListTenants(lockbox::v1::ListTenantsRequest());
  if (!tenants.ok()) {
    std::cerr << "ListTenants: " << tenants.status().error_message() << "\n";
    return 1;
  }
  std::cout << "tenants: " << tenants->tenants_size() << "\n";
  return 0;
}
